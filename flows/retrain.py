"""``retrain``: choose a training window, train a challenger, gate it, promote it."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.states import Completed, State

from flows.hooks import notify_failure
from flows.tasks import load_training_window, record_challenger, train_and_gate
from ia_continu.loop.results import RetrainOutcome, parse_trigger
from ia_continu.settings import get_settings

LIMIT_WAIT_SECONDS = 20


@flow(name="retrain", on_failure=[notify_failure])
def retrain(
    trigger: str = "manual", drift_report_id: str | None = None
) -> RetrainOutcome | State[None]:
    """Train, evaluate against the champion on the newest batch, promote if better.

    One retrain at a time across all workers (global concurrency limit); a run that
    cannot get the slot within 20 s ends as ``Skipped`` (the returned state).

    Raises:
        ValueError: ``trigger`` is not ``bootstrap``, ``manual``, ``drift`` or
            ``schedule``.
    """
    checked = parse_trigger(trigger)
    logger = get_run_logger()
    try:
        with concurrency(
            get_settings().retrain_concurrency_limit, occupy=1, timeout_seconds=LIMIT_WAIT_SECONDS
        ):
            window = load_training_window(drift_report_id)
            challenger, gate = train_and_gate(window)
            outcome = record_challenger(window, challenger, gate, checked, drift_report_id)
    except TimeoutError:
        message = "skipped: another retrain holds the concurrency limit"
        logger.warning(message)
        return Completed(name="Skipped", message=message)
    logger.info(
        "challenger %s vs champion %s: %s -> %s",
        outcome.challenger_accuracy,
        outcome.champion_accuracy,
        outcome.reason,
        f"promoted version {outcome.version}" if outcome.promoted else "rejected",
    )
    return outcome


if __name__ == "__main__":
    retrain()
