"""Push a flow run's metrics to the Pushgateway, labelled with its deployment."""

from __future__ import annotations

from loguru import logger
from prefect.runtime import deployment, flow_run
from prometheus_client import CollectorRegistry

from ia_continu.loop import flow_metrics
from ia_continu.loop.results import DriftSummary, RetrainOutcome, ServingSummary
from ia_continu.notify.outbox import Outbox
from ia_continu.settings import get_settings


def deployment_label() -> str:
    """``flow/deployment`` of the running flow run, ``flow/local`` outside a deployment."""
    flow_name = flow_run.get_flow_name() or "unknown"
    return f"{flow_name}/{deployment.get_name() or 'local'}"


def push_run(
    drift: DriftSummary | None,
    outcome: RetrainOutcome | None,
    duration_seconds: float,
    succeeded: bool,
    serving: ServingSummary | None = None,
) -> bool:
    """Build the registry for this run and push it; never raises (logs a warning).

    Besides the run's own metrics, the Discord notification counts and outbox size
    (``flow_metrics.notification_metrics``) read from the data dir, and the serving
    monitor's summary (``flow_metrics.serving_metrics``) when ``serving`` is given.

    Returns False when nothing was pushed (no ``IAC_PUSHGATEWAY_URL``, or it failed).
    """
    settings = get_settings()
    if not settings.pushgateway_url:
        return False
    registry = CollectorRegistry()
    champion = None
    if drift is not None:
        flow_metrics.drift_metrics(drift, registry)
        champion = drift.champion_version
    if outcome is not None:
        flow_metrics.retrain_metrics(outcome, registry)
        if outcome.promoted:
            champion = outcome.version
    flow_metrics.champion_metrics(registry, champion)
    if serving is not None:
        flow_metrics.serving_metrics(serving, registry)
    flow_metrics.run_metrics(registry, duration_seconds, succeeded)
    outbox = Outbox.for_settings(settings)  # reads a small local file; never raises OSError
    flow_metrics.notification_metrics(registry, outbox.counts(), outbox.size())
    try:
        flow_metrics.push(
            settings.pushgateway_url,
            deployment_label(),
            registry,
            timeout=settings.pushgateway_timeout_seconds,
        )
    except OSError as exc:
        logger.warning("metrics not pushed to {}: {}", settings.pushgateway_url, exc)
        return False
    return True
