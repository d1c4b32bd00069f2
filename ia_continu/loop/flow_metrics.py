"""Metrics of flow runs for Prometheus, through a Pushgateway.

Flow runs live for seconds, too short to be scraped, so each top-level flow run pushes
its metrics once, at its end, to a Prometheus Pushgateway (prometheus-client's
``pushadd_to_gateway``; https://prometheus.github.io/client_python/exporting/pushgateway/).
The grouping key is ``{job="ia-continu", deployment="<flow>/<deployment>"}``. ``pushadd``
(HTTP POST) replaces only the metric names of this push within the group, so a cycle that
did not retrain keeps the previous retrain outcome visible.

Every metric is a gauge (a pushed counter would restart at each run), except
``iac_notifications_total``, whose counts persist in the data dir between runs; times are
Unix seconds, accuracies fractions in 0..1.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ia_continu.loop.results import DriftSummary, RetrainOutcome, ServingSummary

JOB = "ia-continu"


def drift_metrics(summary: DriftSummary, registry: CollectorRegistry) -> None:
    """Add the drift report's metrics to ``registry``.

    Args:
        summary: the drift report's summary (``DriftReport.summary``).
        registry: where the gauges are registered.

    Metrics: ``iac_feature_drift_statistic{feature,test}`` (KS D or chi-square),
    ``iac_feature_drift_p_adjusted{feature}`` (Benjamini–Hochberg),
    ``iac_feature_drift_effect{feature}`` (normalised Wasserstein or PSI),
    ``iac_feature_drift_detected{feature}`` (0/1), ``iac_data_drift_detected``,
    ``iac_concept_drift_detected``, ``iac_drifted_features``, ``iac_champion_accuracy``
    (newest batch), ``iac_champion_reference_accuracy`` (the concept-drift reference:
    validation rows pooled with the champion's first batches in service) and
    ``iac_concept_drift_p_value`` (one-sided STEPD p-value, Nishida & Yamauchi 2007; see
    :mod:`ia_continu.monitoring.concept_drift`). A value that is None is not pushed.
    """
    statistic = Gauge(
        "iac_feature_drift_statistic",
        "Drift test statistic of a feature, reference vs current window (KS D or chi-square).",
        ["feature", "test"],
        registry=registry,
    )
    p_adjusted = Gauge(
        "iac_feature_drift_p_adjusted",
        "Benjamini-Hochberg adjusted p-value of the feature's drift test.",
        ["feature"],
        registry=registry,
    )
    effect = Gauge(
        "iac_feature_drift_effect",
        "Effect size: normalised Wasserstein distance (numeric) or PSI (categorical).",
        ["feature"],
        registry=registry,
    )
    detected = Gauge(
        "iac_feature_drift_detected",
        "1 when the feature drifted (significant and above the effect-size floor).",
        ["feature"],
        registry=registry,
    )
    for item in summary.features:
        statistic.labels(feature=item.feature, test=item.test).set(item.statistic)
        p_adjusted.labels(feature=item.feature).set(item.p_adjusted)
        effect.labels(feature=item.feature).set(item.effect)
        detected.labels(feature=item.feature).set(1.0 if item.drifted else 0.0)
    _gauge(registry, "iac_data_drift_detected", "1 when dataset-level data drift is declared.").set(
        1.0 if summary.data_drift else 0.0
    )
    _gauge(
        registry,
        "iac_concept_drift_detected",
        "1 when the champion's error rate on the newest batch is significantly above its "
        "reference (STEPD test).",
    ).set(1.0 if summary.concept_drift else 0.0)
    _gauge(registry, "iac_drifted_features", "Number of drifted features.").set(
        float(len(summary.drifted_features))
    )
    optional = [
        (
            "champion_accuracy",
            "iac_champion_accuracy",
            "Champion accuracy on the newest labelled batch (0..1).",
        ),
        (
            "reference_accuracy",
            "iac_champion_reference_accuracy",
            "Champion reference accuracy of the concept-drift test: its validation rows "
            "pooled with its first batches in service (0..1).",
        ),
        (
            "concept_drift_p_value",
            "iac_concept_drift_p_value",
            "One-sided STEPD p-value: champion error rate on the newest batch vs its "
            "reference; concept drift below IAC_CONCEPT_DRIFT_ALPHA.",
        ),
    ]
    for key, name, documentation in optional:
        value = getattr(summary, key)
        if value is not None:
            _gauge(registry, name, documentation).set(float(value))


def retrain_metrics(
    outcome: RetrainOutcome, registry: CollectorRegistry, now: float | None = None
) -> None:
    """Add the retrain outcome's metrics to ``registry``.

    Args:
        outcome: the retrain outcome (``window``: label of the training window chosen,
            e.g. ``last_8``, ``since_change``, ``bootstrap``; None without a challenger).
        registry: where the gauges are registered.
        now: Unix time of the outcome (default: now).

    Metrics: ``iac_retrain_promoted`` (1 promoted, 0 rejected),
    ``iac_retrain_timestamp_seconds{outcome,trigger,window}`` (when the last promotion /
    rejection happened; ``window`` is empty without a challenger),
    ``iac_challenger_accuracy``.
    """
    outcome_name = "promoted" if outcome.promoted else "rejected"
    _gauge(registry, "iac_retrain_promoted", "1 when the last challenger was promoted.").set(
        1.0 if outcome.promoted else 0.0
    )
    Gauge(
        "iac_retrain_timestamp_seconds",
        "Unix time of the last retrain with this outcome.",
        ["outcome", "trigger", "window"],
        registry=registry,
    ).labels(
        outcome=outcome_name,
        trigger=outcome.trigger,
        window=outcome.window or "",
    ).set(time.time() if now is None else now)
    if outcome.challenger_accuracy is not None:
        _gauge(
            registry,
            "iac_challenger_accuracy",
            "Accuracy of the last challenger on the newest batch (0..1).",
        ).set(outcome.challenger_accuracy)


SERVING_GAUGES = (
    (
        "estimated_accuracy",
        "iac_estimated_accuracy",
        "CBPE-estimated champion accuracy on the newest served predictions, before "
        "labels arrive (0..1).",
    ),
    (
        "estimated_lower",
        "iac_estimated_accuracy_lower",
        "Lower end of the CBPE estimate's interval (0..1).",
    ),
    (
        "estimated_upper",
        "iac_estimated_accuracy_upper",
        "Upper end of the CBPE estimate's interval (0..1).",
    ),
    (
        "realised_accuracy",
        "iac_realised_accuracy",
        "Realised accuracy of the newest serving report whose labels have landed (0..1).",
    ),
    (
        "label_coverage",
        "iac_label_coverage",
        "Share of the serving window's predictions already labelled (0..1).",
    ),
)


def serving_metrics(summary: ServingSummary, registry: CollectorRegistry) -> None:
    """Add the serving monitor's metrics to ``registry``.

    Args:
        summary: the serving monitor's summary
            (``ia_continu.monitoring.serving_monitor.run_serving_monitor``).
        registry: where the gauges are registered.

    Metrics: ``iac_estimated_accuracy``, ``iac_estimated_accuracy_lower``,
    ``iac_estimated_accuracy_upper`` (CBPE, NannyML's confidence-based performance
    estimation; see :mod:`ia_continu.monitoring.estimation`), ``iac_realised_accuracy`` (newest
    report with labels), ``iac_label_coverage``, and, when a report was made,
    ``iac_serving_drift`` (1 when the served inputs drifted from the champion's
    reference) and ``iac_prediction_drift`` (1 when its predicted class or probability
    did). A value that is None is not pushed.
    """
    for key, name, documentation in SERVING_GAUGES:
        value = getattr(summary, key)
        if value is not None:
            _gauge(registry, name, documentation).set(float(value))
    if summary.status == "reported":
        _gauge(
            registry,
            "iac_serving_drift",
            "1 when the served inputs drifted from the champion's reference window.",
        ).set(1.0 if summary.data_drift else 0.0)
        _gauge(
            registry,
            "iac_prediction_drift",
            "1 when the champion's served predicted class or probability drifted from "
            "its outputs on the reference window.",
        ).set(1.0 if summary.prediction_drift else 0.0)


def champion_metrics(registry: CollectorRegistry, version: int | None) -> None:
    """``iac_champion_version``: the registry version holding ``champion`` after the run
    (the promoted challenger's when there was a promotion); nothing when there is none."""
    if version is not None:
        _gauge(
            registry, "iac_champion_version", "Registry version holding the champion alias."
        ).set(float(version))


def run_metrics(
    registry: CollectorRegistry, duration_seconds: float, succeeded: bool, now: float | None = None
) -> None:
    """Add the flow run's own metrics: ``iac_flow_duration_seconds`` and
    ``iac_flow_last_success_timestamp_seconds`` or ``iac_flow_last_failure_timestamp_seconds``
    (Unix seconds)."""
    _gauge(registry, "iac_flow_duration_seconds", "Wall time of the last flow run.").set(
        duration_seconds
    )
    name = "success" if succeeded else "failure"
    _gauge(
        registry,
        f"iac_flow_last_{name}_timestamp_seconds",
        f"Unix time of the last flow run that ended in {name}.",
    ).set(time.time() if now is None else now)


def notification_metrics(
    registry: CollectorRegistry, counts: Mapping[str, int], outbox_size: int
) -> None:
    """Add the Discord notification metrics.

    Args:
        registry: where the metrics are registered.
        counts: cumulative outcomes ``delivered``, ``queued``, ``dropped`` (message counts,
            ``ia_continu.notify.outbox.Outbox.counts``: kept in the data dir, so a true
            counter across runs).
        outbox_size: messages waiting for the next cycle.

    Metrics: ``iac_notifications_total{outcome}`` (counter; ``queued`` counts messages that
    had to wait, each later counted again as ``delivered`` or ``dropped``) and
    ``iac_notifications_outbox_messages`` (gauge).
    """
    family = CounterMetricFamily(
        "iac_notifications",
        "Discord notifications by outcome: delivered, queued (kept for a later cycle), "
        "dropped (rejected by Discord, or the outbox was full).",
        labels=["outcome"],
    )
    for outcome in ("delivered", "queued", "dropped"):
        family.add_metric([outcome], float(counts.get(outcome, 0)))
    registry.register(_Fixed([family]))
    _gauge(
        registry,
        "iac_notifications_outbox_messages",
        "Discord notifications waiting in the outbox for the next cycle.",
    ).set(float(outbox_size))


class _Fixed(Collector):
    """Already-built metric families (a counter read back from storage, not incremented)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return list(self._families)


def push(gateway: str, deployment: str, registry: CollectorRegistry, timeout: float = 5.0) -> None:
    """POST ``registry`` to the Pushgateway at ``gateway`` under grouping key
    ``{job="ia-continu", deployment=...}``.

    Raises:
        OSError: the Pushgateway cannot be reached or answers an error
            (``urllib.error.URLError`` / ``HTTPError`` are ``OSError`` subclasses).
    """
    pushadd_to_gateway(
        gateway,
        job=JOB,
        registry=registry,
        grouping_key={"deployment": deployment},
        timeout=timeout,
    )


def _gauge(registry: CollectorRegistry, name: str, documentation: str) -> Gauge:
    return Gauge(name, documentation, registry=registry)
