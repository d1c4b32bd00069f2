"""``continuous_training`` on served traffic (``IAC_DATA_SOURCE=serving``), for real under
the Prefect test harness: the serving monitor runs every cycle, detect_drift only when a
labelled batch was made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flows.continuous_training import continuous_training
from ia_continu.data.storage import repository
from ia_continu.data.storage.migrate import migrate
from ia_continu.loop.results import CycleResult
from ia_continu.settings import get_settings
from tests.utils.prometheus import pushgateway
from tests.utils.serving import serve_champion


def _cycle() -> CycleResult:
    result = continuous_training()
    assert isinstance(result, CycleResult), result  # not Skipped
    return result


def test_a_serving_cycle_without_labelled_batch_skips_drift_but_monitors(
    flow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAC_DATA_SOURCE", "serving")
    monkeypatch.setenv("IAC_SERVING_SEED_SOURCE", "synthetic")
    with pushgateway(flow_env / "pgw") as url:
        monkeypatch.setenv("IAC_PUSHGATEWAY_URL", url)
        get_settings.cache_clear()
        settings = get_settings()
        engine = migrate(settings.resolved_database_url)

        seeded = _cycle()  # the seed batch: bootstrap champion version 1
        assert seeded.batch.batch_id is not None
        assert seeded.retrain.promoted and seeded.retrain.version == 1
        assert seeded.serving.status == "no_champion"  # monitored before the retrain
        reports = repository.latest_drift_flags(engine, seeded.batch.source)
        assert reports is not None and reports.id == seeded.drift.id

        idle = _cycle()  # nothing served yet: no labelled batch
        assert idle.batch.batch_id is None and not idle.batch.quarantined
        assert idle.drift is None and idle.retrain is None
        assert idle.serving.status == "no_window"

        # Traffic served just now: too young for a batch (IAC_LABEL_DELAY), not for the monitor.
        serve_champion(settings, 120, datetime.now(UTC) - timedelta(seconds=1), labelled=False)
        watched = _cycle()
        assert watched.batch.batch_id is None
        assert "IAC_LABEL_DELAY" in watched.batch.reason
        assert watched.drift is None and watched.retrain is None
        serving = watched.serving
        assert serving.status == "reported" and serving.champion_version == 1
        assert serving.n_rows == 120 and serving.label_coverage == 0.0
        assert serving.estimated_accuracy is not None
        text = httpx.get(f"{url}/metrics", timeout=5).text

    # detect_drift ran once only (the seed cycle): one drift report in the database.
    assert repository.latest_drift_flags(engine, seeded.batch.source) == reports
    (stored,) = repository.serving_reports(engine, 10)
    assert stored["id"] == serving.report_id
    pushed = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("iac_")
    }
    assert pushed["iac_estimated_accuracy"] == pytest.approx(serving.estimated_accuracy)
    assert pushed["iac_estimated_accuracy_lower"] <= pushed["iac_estimated_accuracy"]
    assert pushed["iac_estimated_accuracy_upper"] >= pushed["iac_estimated_accuracy"]
    assert pushed["iac_label_coverage"] == 0.0
    assert pushed["iac_serving_drift"] == 0.0 and pushed["iac_prediction_drift"] == 0.0
    assert "iac_flow_last_success_timestamp_seconds" in pushed
