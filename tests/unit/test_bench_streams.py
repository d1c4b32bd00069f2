"""Smoke test of the stream benchmark (`make bench` runs the whole suite).

The quick variant (`python -m bench.streams --quick`): the generated Agrawal stream with an
abrupt drift at batch 20, cut to 30 batches, every policy, through the real cycle code.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import streams
from bench.stream_suite import QUICK


def test_quick_run_reports_every_policy_the_drift_and_the_targets(tmp_path: Path) -> None:
    output = tmp_path / "streams.json"
    code = streams.main(
        [
            "--quick",
            "--generated-dir",
            str(tmp_path / "generated"),
            "--no-plots",
            "--output",
            str(output),
        ]
    )
    assert code == 0
    payload = json.loads(output.read_text())
    (result,) = payload["streams"]
    assert result["stream"] == QUICK and result["batches"] == 30
    assert set(result["policies"]) == set(streams.POLICIES)
    ours, never = result["policies"]["ours"], result["policies"]["never"]
    # The abrupt drift at batch 20 is flagged and answered by a promotion.
    (response,) = result["drift_response"]
    assert response["drift_batch"] == 20
    assert response["flag_delay"] is not None and response["flag_delay"] <= 5
    assert response["promotion_delay"] is not None
    assert ours["prequential_accuracy"] > never["prequential_accuracy"]
    assert 0 < ours["retrains"] < result["policies"]["every_batch"]["retrains"]
    assert {"ours_ge_never", "abrupt_drifts_flagged_within_2"} <= set(result["targets"])
    assert payload["settings"]["concept_drift_alpha"] == 0.01
    assert output.with_suffix(".md").read_text().startswith(f"### {QUICK}")


def test_settings_are_overridden_for_every_stream_and_validated(tmp_path: Path) -> None:
    assert streams.parse_overrides(["IAC_CONCEPT_DRIFT_ALPHA=0.05"]) == {
        "concept_drift_alpha": "0.05"
    }
    import pytest

    with pytest.raises(SystemExit, match="concept_drift_alpha"):
        streams.parse_overrides(["concept_drift_alpha=2"])
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        streams.parse_overrides(["concept_drift_alpha"])
