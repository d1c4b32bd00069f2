"""Flow metrics: what a run pushes, and pushes to a real Pushgateway (Debian's package)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ia_continu.loop import flow_metrics
from ia_continu.loop.results import DriftSummary, RetrainOutcome
from tests.utils.prometheus import pushgateway
from tests.utils.servers import free_port

SUMMARY = DriftSummary.model_validate(
    {
        "id": "r1",
        "batch_id": 7,
        "data_drift_new": True,
        "retrain": True,
        "trigger": "drift",
        "reason": "concept drift",
        "data_drift": True,
        "concept_drift": False,
        "drifted_features": ["nswprice"],
        "champion_accuracy": 0.81,
        "reference_accuracy": 0.84,
        "concept_drift_p_value": 0.2,
        "change_batch_id": None,
        "champion_version": 3,
        "features": [
            {
                "feature": "nswprice",
                "test": "ks",
                "statistic": 0.31,
                "p_adjusted": 1e-9,
                "effect": 0.4,
                "drifted": True,
            },
            {
                "feature": "day",
                "test": "chi2",
                "statistic": 2.5,
                "p_adjusted": 0.7,
                "effect": 0.01,
                "drifted": False,
            },
        ],
    }
)
OUTCOME = RetrainOutcome(
    promoted=True,
    version=4,
    challenger_accuracy=0.86,
    champion_accuracy=0.8,
    p_value=0.003,
    window="last_8",
    reason="promoted",
    trigger="drift",
)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_drift_retrain_and_run_metrics() -> None:
    registry = CollectorRegistry()
    flow_metrics.drift_metrics(SUMMARY, registry)
    flow_metrics.retrain_metrics(OUTCOME, registry, now=1_000.0)
    flow_metrics.champion_metrics(registry, 4)
    flow_metrics.run_metrics(registry, 6.5, succeeded=True, now=2_000.0)
    samples = _samples(registry)
    assert (
        samples[("iac_feature_drift_statistic", (("feature", "nswprice"), ("test", "ks")))] == 0.31
    )
    assert samples[("iac_feature_drift_statistic", (("feature", "day"), ("test", "chi2")))] == 2.5
    assert samples[("iac_feature_drift_detected", (("feature", "nswprice"),))] == 1.0
    assert samples[("iac_feature_drift_detected", (("feature", "day"),))] == 0.0
    assert samples[("iac_feature_drift_p_adjusted", (("feature", "day"),))] == 0.7
    assert samples[("iac_data_drift_detected", ())] == 1.0
    assert samples[("iac_concept_drift_detected", ())] == 0.0
    assert samples[("iac_drifted_features", ())] == 1.0
    assert samples[("iac_champion_accuracy", ())] == 0.81
    assert samples[("iac_champion_reference_accuracy", ())] == 0.84
    assert samples[("iac_concept_drift_p_value", ())] == 0.2
    assert samples[("iac_retrain_promoted", ())] == 1.0
    labels = (("outcome", "promoted"), ("trigger", "drift"), ("window", "last_8"))
    assert samples[("iac_retrain_timestamp_seconds", labels)] == 1_000.0
    assert samples[("iac_challenger_accuracy", ())] == 0.86
    assert samples[("iac_champion_version", ())] == 4.0
    assert samples[("iac_flow_duration_seconds", ())] == 6.5
    assert samples[("iac_flow_last_success_timestamp_seconds", ())] == 2_000.0
    names = {name for name, _ in samples}
    # The accuracy-floor rule is gone (issue 12): its gauges must not come back.
    assert not names & {"iac_accuracy_floor", "iac_champion_validation_accuracy"}


def test_no_champion_yet_pushes_no_accuracy_p_value_or_version() -> None:
    registry = CollectorRegistry()
    nothing = dict.fromkeys(("champion_accuracy", "reference_accuracy", "concept_drift_p_value"))
    flow_metrics.drift_metrics(SUMMARY.model_copy(update=nothing), registry)
    flow_metrics.champion_metrics(registry, None)
    names = {name for name, _ in _samples(registry)}
    assert not names & {
        "iac_champion_accuracy",
        "iac_champion_reference_accuracy",
        "iac_concept_drift_p_value",
        "iac_champion_version",
    }
    assert "iac_concept_drift_detected" in names


def test_a_retrain_without_challenger_has_an_empty_window_label() -> None:
    registry = CollectorRegistry()
    rejected = RetrainOutcome(
        challenger_accuracy=None, champion_accuracy=0.8, reason="no challenger", trigger="drift"
    )
    flow_metrics.retrain_metrics(rejected, registry, now=5.0)
    samples = _samples(registry)
    labels = (("outcome", "rejected"), ("trigger", "drift"), ("window", ""))
    assert samples[("iac_retrain_timestamp_seconds", labels)] == 5.0
    assert samples[("iac_retrain_promoted", ())] == 0.0
    assert "iac_challenger_accuracy" not in {name for name, _ in samples}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pushgateway(tmp_path_factory.mktemp("pgw")) as url:
        yield url


def _pushed(gateway: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{gateway}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("iac_")
    }


def test_push_groups_by_deployment_and_keeps_other_metrics(gateway: str) -> None:
    first = CollectorRegistry()
    flow_metrics.retrain_metrics(OUTCOME, first, now=1_000.0)
    flow_metrics.run_metrics(first, 5.0, succeeded=True, now=1_000.0)
    flow_metrics.push(gateway, "continuous_training/continuous-training", first)
    # A later cycle without retrain: its push must not erase the retrain outcome.
    second = CollectorRegistry()
    flow_metrics.drift_metrics(SUMMARY, second)
    flow_metrics.run_metrics(second, 7.0, succeeded=True, now=1_030.0)
    flow_metrics.push(gateway, "continuous_training/continuous-training", second)
    pushed = _pushed(gateway)
    group = (
        ("deployment", "continuous_training/continuous-training"),
        ("instance", ""),
        ("job", "ia-continu"),
    )
    assert pushed[("iac_retrain_promoted", group)] == 1.0
    assert pushed[("iac_flow_duration_seconds", group)] == 7.0
    assert pushed[("iac_flow_last_success_timestamp_seconds", group)] == 1_030.0
    assert pushed[("iac_data_drift_detected", group)] == 1.0


def test_an_unreachable_gateway_raises_oserror() -> None:
    with pytest.raises(OSError):
        flow_metrics.push(f"http://127.0.0.1:{free_port()}", "x/y", CollectorRegistry(), 1.0)


def test_push_run_without_url_or_with_a_dead_gateway_never_raises(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.metrics_push import push_run
    from ia_continu.settings import get_settings

    assert push_run(SUMMARY, OUTCOME, 1.0, succeeded=True) is False  # no URL: nothing
    monkeypatch.setenv("IAC_PUSHGATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("IAC_PUSHGATEWAY_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    assert push_run(SUMMARY, OUTCOME, 1.0, succeeded=True) is False


def test_notification_metrics_counter_and_outbox_gauge() -> None:
    registry = CollectorRegistry()
    flow_metrics.notification_metrics(registry, {"delivered": 7, "queued": 2}, outbox_size=1)
    text = generate_latest(registry).decode()
    assert "# TYPE iac_notifications_total counter" in text
    assert "iac_notifications_created" not in text  # no per-push creation time
    samples = _samples(registry)
    assert samples[("iac_notifications_total", (("outcome", "delivered"),))] == 7.0
    assert samples[("iac_notifications_total", (("outcome", "queued"),))] == 2.0
    assert samples[("iac_notifications_total", (("outcome", "dropped"),))] == 0.0
    assert samples[("iac_notifications_outbox_messages", ())] == 1.0


def test_push_run_pushes_the_outbox_counts(
    gateway: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The counts persist in the data dir between flow runs (separate processes), so two
    pushes show a growing counter, not a per-run figure."""
    from flows.metrics_push import push_run
    from ia_continu.notify.outbox import Outbox, Pending
    from ia_continu.settings import get_settings

    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IAC_PUSHGATEWAY_URL", gateway)
    get_settings.cache_clear()
    outbox = Outbox.for_settings(get_settings())
    waiting = Pending(embeds=[{"title": "t"}], queued_at=1.0)
    outbox.settle([waiting], {"delivered": 3, "queued": 1})
    assert push_run(None, None, 1.0, succeeded=True)
    outbox.settle([], {"delivered": 1, "dropped": 1})
    assert push_run(None, None, 1.0, succeeded=True)
    group = (("deployment", "unknown/local"), ("instance", ""), ("job", "ia-continu"))
    pushed = _pushed(gateway)
    totals = {
        outcome: pushed[("iac_notifications_total", (*group, ("outcome", outcome)))]
        for outcome in ("delivered", "queued", "dropped")
    }
    assert totals == {"delivered": 4.0, "queued": 1.0, "dropped": 1.0}
    assert pushed[("iac_notifications_outbox_messages", group)] == 1.0
