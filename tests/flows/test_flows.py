"""The flows, run for real under the Prefect test harness (MLflow in a SQLite file)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from flows.continuous_training import continuous_training
from flows.detect_drift import detect_drift
from flows.generate import generate
from flows.retrain import retrain
from ia_continu.loop.results import DriftSummary, RetrainOutcome
from ia_continu.notify.events import cycle_notices as events
from ia_continu.settings import get_settings
from tests.utils.prometheus import pushgateway
from tests.utils.servers import free_port


def _client() -> MlflowClient:
    uri = get_settings().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_generate_is_idempotent_per_key(flow_env: Path) -> None:
    first = generate(ingest_key="k-1")
    again = generate(ingest_key="k-1")
    other = generate(ingest_key="k-2")
    assert first.created and not again.created
    assert again.batch_id == first.batch_id
    assert other.position == first.position + 1


def test_generate_defaults_to_its_flow_run_id(flow_env: Path) -> None:
    a, b = generate(), generate()
    assert a.batch_id != b.batch_id


def test_detect_drift_without_data_fails_clearly(flow_env: Path) -> None:
    state = detect_drift(return_state=True)
    assert state.is_failed()
    assert "no batch ingested yet" in str(state.message)


def test_retrain_rejects_unknown_trigger(flow_env: Path) -> None:
    state = retrain(trigger="cron", return_state=True)
    assert state.is_failed()
    assert "trigger must be" in str(state.message)


def test_continuous_training_detects_concept_drift_and_promotes(flow_env: Path) -> None:
    summaries: list[Any] = [continuous_training() for _ in range(5)]
    name = get_settings().registered_model_name
    client = _client()

    first = summaries[0]
    assert first.drift.reason == "no champion yet"
    assert first.retrain.promoted and first.retrain.version == 1
    assert first.retrain.trigger == "bootstrap"
    # Positions 0-2 follow one rule, 3-5 the flipped one (period of 3 batches).
    quiet = summaries[1:3]
    assert all(not s.drift.retrain for s in quiet)
    flip = summaries[3]
    assert flip.drift.concept_drift, flip.drift
    assert flip.drift.champion_accuracy < 0.7
    assert flip.retrain.trigger == "drift"
    assert flip.retrain.drift_report_id == flip.drift.id

    champion = client.get_model_version_by_alias(name, "champion")
    assert int(champion.version) >= 2
    previous = client.get_model_version_by_alias(name, "previous")
    assert int(previous.version) == int(champion.version) - 1
    assert champion.tags["trigger"] == "drift"
    assert champion.tags["training_batch_ids"]


def test_force_retrain_is_manual_trigger(flow_env: Path) -> None:
    continuous_training()
    forced = continuous_training(force_retrain=True)
    assert forced.drift.retrain
    assert forced.retrain.trigger == "manual"


def test_events_only_on_drift_or_retrain() -> None:
    quiet = DriftSummary(
        id="r",
        data_drift=False,
        data_drift_new=False,
        concept_drift=False,
        retrain=False,
        reason="no drift",
        batch_id=3,
        champion_version=1,
        champion_accuracy=0.9,
        reference_accuracy=0.91,
        drifted_features=[],
    )
    assert events(quiet, None) == []
    drifted = quiet.model_copy(update={"concept_drift": True, "champion_accuracy": 0.5})
    outcome = RetrainOutcome(
        promoted=True,
        version=2,
        previous_version=1,
        challenger_accuracy=0.9,
        champion_accuracy=0.5,
        reason="better",
        trigger="drift",
    )
    statuses = [e.status for e in events(drifted, outcome)]
    assert statuses == ["drift", "success"]
    assert events(quiet, outcome.model_copy(update={"promoted": False}))[0].status == "warning"
    lasting = quiet.model_copy(update={"data_drift": True, "data_drift_new": False})
    assert events(lasting, None) == []
    assert events(lasting.model_copy(update={"data_drift_new": True}), None)[0].status == "drift"
    broken = quiet.model_copy(
        update={"champion_problem": "champion version 3 cannot be loaded (BadZipFile)"}
    )
    (event,) = events(broken, None)
    assert event.status == "failure"
    assert event.title == f"Champion version {quiet.champion_version} cannot be loaded"
    assert "BadZipFile" in event.description


def test_continuous_training_pushes_its_metrics(
    flow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run pushes drift, retrain and run metrics to a real Pushgateway, grouped by
    deployment (``continuous_training/local`` outside a deployment)."""
    with pushgateway(flow_env / "pgw") as url:
        monkeypatch.setenv("IAC_PUSHGATEWAY_URL", url)
        get_settings.cache_clear()
        continuous_training()  # bootstrap: a champion is trained and promoted
        continuous_training()
        text = httpx.get(f"{url}/metrics", timeout=5).text
    samples = {
        (s.name, s.labels.get("feature", "")): (s.value, s.labels)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("iac_")
    }
    value, labels = samples[("iac_flow_last_success_timestamp_seconds", "")]
    assert labels["job"] == "ia-continu"
    assert labels["deployment"] == "continuous_training/local"
    assert abs(value - time.time()) < 120
    assert samples[("iac_champion_version", "")][0] == 1.0
    assert samples[("iac_retrain_promoted", "")][0] == 1.0  # kept from the first run
    assert 0.5 < samples[("iac_champion_accuracy", "")][0] <= 1.0
    assert {"feature1", "feature2"} <= {
        f for (n, f) in samples if n == "iac_feature_drift_detected"
    }


def test_a_dead_pushgateway_does_not_fail_the_loop(
    flow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAC_PUSHGATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("IAC_PUSHGATEWAY_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    state = continuous_training(return_state=True)
    assert state.is_completed()
