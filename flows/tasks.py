"""Prefect tasks, each wrapping one plain function of ia_continu.loop.cycle or notify."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from flows import hooks, metrics_push
from flows.retries import IO_RETRIES
from ia_continu.data.storage.repository import IngestResult
from ia_continu.loop import cycle
from ia_continu.loop.results import (
    DriftReport,
    DriftSummary,
    GateResult,
    Model,
    RetrainOutcome,
    ServingSummary,
    Trigger,
)
from ia_continu.monitoring import serving_monitor as monitoring
from ia_continu.settings import get_settings


@task(name="ingest-batch", **IO_RETRIES)
def ingest_batch(ingest_key: str | None) -> IngestResult:
    """Persist the next batch exactly once (keyed by ``ingest_key``)."""
    return cycle.ingest(get_settings(), ingest_key)


@task(name="load-drift-inputs", **IO_RETRIES)
def load_drift_inputs() -> cycle.DriftInputs:
    """Current window, champion and reference window."""
    return cycle.load_drift_inputs(get_settings())


@task(name="evaluate-drift")
def evaluate_drift(inputs: cycle.DriftInputs, force_retrain: bool) -> DriftReport:
    """Data drift, performance drift and the retrain decision (pure: no retries)."""
    return cycle.evaluate_drift(inputs, get_settings(), force=force_retrain)


@task(name="persist-drift-report", **IO_RETRIES)
def persist_drift_report(report: DriftReport) -> str:
    """Store the report and log it to MLflow."""
    return cycle.persist_drift_report(get_settings(), report)


@task(name="load-training-window", **IO_RETRIES)
def load_training_window(drift_report_id: str | None = None) -> cycle.TrainingWindow:
    """Recent batches (newest held out), the champion and the report's change point."""
    return cycle.load_training_window(get_settings(), drift_report_id)


@task(name="train-and-gate")
def train_and_gate(window: cycle.TrainingWindow) -> tuple[Model | None, GateResult]:
    """Choose the window, train the challenger, apply the promotion gate (pure: no retries)."""
    return cycle.train_and_gate(window, get_settings())


@task(name="record-challenger", **IO_RETRIES)
def record_challenger(
    window: cycle.TrainingWindow,
    challenger: Model | None,
    gate: GateResult,
    trigger: Trigger,
    drift_report_id: str | None,
) -> RetrainOutcome:
    """Log the challenger to MLflow; register and promote it if the gate passed."""
    return cycle.record_challenger(
        get_settings(),
        window,
        challenger,
        gate,
        trigger=trigger,
        drift_report_id=drift_report_id,
    )


@task(name="monitor-serving", **IO_RETRIES)
def monitor_serving() -> ServingSummary:
    """Serving drift and CBPE-estimated accuracy of the newest served predictions; fill
    realised accuracies of older reports (``ia_continu.monitoring.serving_monitor.run_serving_monitor``)."""
    return monitoring.run_serving_monitor(get_settings())


@task(name="send-discord")
def send_discord(embeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Deliver each embed as one Discord message, after any left in the outbox by earlier
    cycles, within one ``IAC_DISCORD_DEADLINE_SECONDS`` bound (``flows.hooks.deliver``).

    No Prefect retries and never raises: what Discord cannot take in time waits in the
    outbox for the next cycle, and the loop goes on.

    Returns:
        ``{"delivered", "queued", "dropped", "outbox": int, "detail": str}``; never the
        webhook URL (the task looks it up itself so that it is no task parameter either).
    """
    report = hooks.deliver(embeds)
    logger = get_run_logger()
    if report.troubled:
        logger.warning("Discord: %s", report.summary())
    else:
        logger.info("Discord: %s", report.summary())
    return report.as_dict()


@task(name="push-metrics")
def push_metrics(
    drift: DriftSummary | None,
    outcome: RetrainOutcome | None,
    duration_seconds: float,
    succeeded: bool,
    serving: ServingSummary | None = None,
) -> bool:
    """Push the run's metrics to ``IAC_PUSHGATEWAY_URL`` (see ``ia_continu.loop.flow_metrics``),
    with the serving monitor's (``flow_metrics.serving_metrics``) when ``serving`` is given.

    Best effort and no retries: the next cycle pushes again 30 s later, and a monitoring
    outage must not fail the loop. Returns whether the push went through.
    """
    return metrics_push.push_run(drift, outcome, duration_seconds, succeeded, serving)
