"""``continuous_training``: generate -> detect_drift -> retrain (when the policy says so) -> notify.

With ``IAC_DATA_SOURCE=serving`` every cycle also monitors the served predictions
(serving drift, CBPE-estimated accuracy) right after ``generate``, and skips
detect_drift and retrain when no labelled batch was made.

Deployed on a 30 s schedule. Runs never pile up: a run exits early as ``Skipped`` when
an earlier run of the deployment is still active or when it starts more than one
interval late.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum
from prefect import flow, get_run_logger
from prefect.runtime import deployment, flow_run
from prefect.states import Completed, State

from flows.detect_drift import detect_drift
from flows.generate import generate
from flows.guards import (
    RunScan,
    deployment_interval,
    earlier_active_runs,
    pileup_reason,
    stale_bound,
    stale_note,
    submitted_at,
)
from flows.hooks import notify_failure, pending_notifications
from flows.retrain import retrain
from flows.tasks import monitor_serving, push_metrics, send_discord
from ia_continu.loop.results import CycleResult, RetrainOutcome
from ia_continu.notify import discord
from ia_continu.notify.events import cycle_notices
from ia_continu.settings import get_settings


@flow(name="continuous_training", on_failure=[notify_failure])
def continuous_training(force_retrain: bool = False) -> CycleResult | State[None]:
    """One cycle of the loop. ``force_retrain`` retrains even without drift."""
    logger = get_run_logger()
    settings = get_settings()
    started = time.monotonic()
    own_id = flow_run.get_id() or ""
    # The deployment's schedule owns the interval; the setting is the fallback for runs
    # outside an interval-scheduled deployment (and when the API hiccups).
    interval = timedelta(seconds=settings.schedule_interval_seconds)
    submitted = None
    try:
        interval = deployment_interval(deployment.get_id()) or interval
        scan = earlier_active_runs(
            deployment.get_id(),
            own_id,
            bound=stale_bound(interval, settings.stale_run_seconds),
        )
        # Lateness counts until a worker took the run, not the process's start-up time.
        submitted = submitted_at(own_id) if deployment.get_id() else None
    except Exception as exc:  # the guard must not stop the loop if the API hiccups
        logger.warning("pile-up check failed (%s); continuing", type(exc).__name__)
        scan = RunScan([], [])
    reason = pileup_reason(
        now=submitted or pendulum.now("UTC"),
        scheduled_start=flow_run.get_scheduled_start_time() if deployment.get_id() else None,
        interval=interval,
        earlier_active_runs=scan.active,
        stale_runs=scan.stale_names,
    )
    note = stale_note(scan.stale_names)
    if note and not reason:
        logger.warning("%s; continuing", note)
    if reason:
        logger.warning(reason)
        return Completed(name="Skipped", message=reason)

    batch = generate(ingest_key=f"continuous_training:{own_id}")
    serving = None
    if settings.data_source == "serving":
        # Every cycle, labelled batch or not: the served traffic is watched before its
        # labels land. Best effort: a monitoring failure must not stop the loop.
        monitored = monitor_serving(return_state=True)
        if monitored.is_failed():
            logger.warning("serving monitor failed: %s", monitored.message)
        else:
            serving = monitored.result()
    # A quarantined batch adds nothing to the windows, and a serving cycle without a
    # labelled batch (batch_id None) nothing either: nothing new to check or train on.
    drift = None
    if batch.batch_id is not None:
        drift = detect_drift(force_retrain=force_retrain)
    elif not batch.quarantined:
        logger.info("no labelled batch this cycle: %s", batch.reason)
    outcome = None
    if drift is not None and drift.trigger is not None:
        # The policy's trigger (ia_continu.loop.policy.decide_retrain) is set exactly when
        # the report says retrain.
        result = retrain(trigger=drift.trigger, drift_report_id=drift.id)
        # A State when retrain skipped (another retrain holds the concurrency limit).
        outcome = result if isinstance(result, RetrainOutcome) else None
    # One task and one IAC_DISCORD_DEADLINE_SECONDS bound for all of this cycle's messages
    # and those earlier cycles could not deliver (the outbox): a slow Discord costs the
    # cycle at most the deadline, and what it did not take waits for the next cycle.
    embeds = [
        discord.build_embed(**notice.model_dump())
        for notice in cycle_notices(drift, outcome, batch, serving)
    ]
    if embeds or pending_notifications():
        state = send_discord(embeds, return_state=True)
        if state.is_failed():
            logger.warning("notification failed: %s", state.message)
    push_metrics(drift, outcome, time.monotonic() - started, succeeded=True, serving=serving)
    return CycleResult(batch=batch, drift=drift, retrain=outcome, serving=serving)


if __name__ == "__main__":
    continuous_training()
