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
from typing import Any

import pendulum
from prefect import flow, get_run_logger
from prefect.runtime import deployment, flow_run
from prefect.states import Completed

from flows.detect_drift import detect_drift
from flows.generate import generate
from flows.guards import (
    RunScan,
    earlier_active_runs,
    pileup_reason,
    stale_bound,
    stale_note,
    submitted_at,
)
from flows.hooks import notify_failure, pending_notifications
from flows.retrain import retrain
from flows.tasks import monitor_serving, push_metrics, send_discord
from ia_continu.notify import discord
from ia_continu.settings import get_settings


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def serving_events(serving: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Notifications of the serving monitor (``ia_continu.monitoring.run_serving_monitor``
    summary): an estimated accuracy drop before labels arrive (a warning only: a retrain
    needs labels), and serving drift when a kind of it newly appears. Each once per
    change of state under one champion, like data drift, not every 30 s."""
    if serving is None or serving.get("status") != "reported":
        return []
    out = []
    if serving.get("warn_new", serving["warn"]):
        out.append(
            {
                "status": "warning",
                "title": "Estimated accuracy dropped (no labels yet)",
                "description": "CBPE estimates the champion's accuracy on the newest served "
                "predictions well below its reference. It assumes no concept drift; no "
                "retrain until labels confirm it.",
                "fields": {
                    "estimated": _percent(serving["estimated_accuracy"]),
                    "interval": f"{_percent(serving['estimated_lower'])} to "
                    f"{_percent(serving['estimated_upper'])}",
                    "reference": _percent(serving["reference_accuracy"]),
                    "coverage": _percent(serving["label_coverage"]),
                    "champion version": str(serving["champion_version"]),
                },
            }
        )
    if serving.get("serving_drift_new"):
        kinds = [
            k
            for k, on in (
                ("inputs", serving["data_drift"]),
                ("predictions", serving["prediction_drift"]),
            )
            if on
        ]
        out.append(
            {
                "status": "drift",
                "title": f"Serving drift detected ({' + '.join(kinds)})",
                "description": "The newest served predictions differ from the champion's "
                "reference window (no labels needed).",
                "fields": {
                    "drifted": ", ".join(serving["drifted_features"]) or "none",
                    "rows": str(serving["n_rows"]),
                    "coverage": _percent(serving["label_coverage"]),
                    "champion version": str(serving["champion_version"]),
                },
            }
        )
    return out


def events(
    drift: dict[str, Any] | None,
    outcome: dict[str, Any] | None,
    batch: dict[str, Any] | None = None,
    serving: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Notifications worth sending: a quarantined batch, concept drift, newly appeared data
    drift, retrain outcome, and the serving monitor's (:func:`serving_events`). ``drift``
    is None when the cycle checked nothing (quarantine, or no labelled serving batch).

    A data drift that persists under the same champion is reported once, not every 30 s.
    """
    out = serving_events(serving)
    if batch is not None and batch.get("quarantined") and batch.get("created", True):
        out.append(
            {
                "status": "warning",
                "title": f"Batch at position {batch['position']} quarantined",
                "description": str(batch["reason"]),
                "fields": {
                    "source": str(batch["source"]),
                    "position": str(batch["position"]),
                    "rows": str(batch["n_rows"]),
                    "quarantine id": str(batch["quarantine_id"]),
                },
            }
        )
    if drift is None:
        return out
    if drift.get("champion_problem"):
        out.append(
            {
                "status": "failure",
                "title": f"Champion version {drift['champion_version']} cannot be loaded",
                "description": f"{drift['champion_problem']}; retraining to replace it "
                "(the API serves `previous` meanwhile)",
                "fields": {"batch": str(drift["batch_id"])},
            }
        )
    if drift["concept_drift"] or drift.get("data_drift_new", drift["data_drift"]):
        kinds = [
            k
            for k, on in (("data", drift["data_drift"]), ("concept", drift["concept_drift"]))
            if on
        ]
        out.append(
            {
                "status": "drift",
                "title": f"Drift detected ({' + '.join(kinds)})",
                "description": drift["reason"],
                "fields": {
                    "batch": str(drift["batch_id"]),
                    "champion version": str(drift["champion_version"]),
                    "champion accuracy": _fmt(drift["champion_accuracy"]),
                    "reference accuracy": _fmt(drift.get("reference_accuracy")),
                    "drifted features": ", ".join(drift["drifted_features"]) or "none",
                },
            }
        )
    if outcome is not None and "promoted" in outcome:
        promoted = outcome["promoted"]
        out.append(
            {
                "status": "success" if promoted else "warning",
                "title": f"Model version {outcome['version']} promoted to champion"
                if promoted
                else "Challenger rejected",
                "description": outcome["reason"],
                "fields": {
                    "model version": str(outcome["version"] or "-"),
                    "previous version": str(outcome["previous_version"] or "-"),
                    "challenger accuracy": _fmt(outcome["challenger_accuracy"]),
                    "champion accuracy": _fmt(outcome["champion_accuracy"]),
                    "training window": str(outcome.get("window") or "-"),
                    "trigger": outcome["trigger"],
                },
            }
        )
    return out


@flow(name="continuous_training", on_failure=[notify_failure])
def continuous_training(force_retrain: bool = False) -> Any:
    """One cycle of the loop. ``force_retrain`` retrains even without drift."""
    logger = get_run_logger()
    settings = get_settings()
    started = time.monotonic()
    own_id = flow_run.get_id() or ""
    interval = timedelta(seconds=settings.schedule_interval_seconds)
    submitted = None
    try:
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
    if batch.get("quarantined") or batch.get("batch_id") is None:
        drift = None
        if not batch.get("quarantined"):
            logger.info("no labelled batch this cycle: %s", batch.get("reason"))
    else:
        drift = detect_drift(force_retrain=force_retrain)
    result = None
    if drift is not None and drift["retrain"]:
        trigger = drift.get("trigger") or (
            "manual"
            if force_retrain
            else ("bootstrap" if drift["champion_version"] is None else "drift")
        )
        result = retrain(trigger=trigger, drift_report_id=drift["id"])
    # retrain returns a dict, or a Completed state when it skipped (no usable window).
    outcome = result if isinstance(result, dict) else None
    # One task and one IAC_DISCORD_DEADLINE_SECONDS bound for all of this cycle's messages
    # and those earlier cycles could not deliver (the outbox): a slow Discord costs the
    # cycle at most the deadline, and what it did not take waits for the next cycle.
    embeds = [discord.build_embed(**event) for event in events(drift, outcome, batch, serving)]
    if embeds or pending_notifications():
        state = send_discord(embeds, return_state=True)
        if state.is_failed():
            logger.warning("notification failed: %s", state.message)
    push_metrics(drift, outcome, time.monotonic() - started, succeeded=True, serving=serving)
    return {"batch": batch, "drift": drift, "retrain": outcome, "serving": serving}


if __name__ == "__main__":
    continuous_training()
