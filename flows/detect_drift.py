"""``detect_drift``: reference vs current window, champion accuracy, retrain decision."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.hooks import notify_failure
from flows.tasks import evaluate_drift, load_drift_inputs, persist_drift_report
from ia_continu.loop.results import DriftSummary


@flow(name="detect_drift", on_failure=[notify_failure])
def detect_drift(force_retrain: bool = False) -> DriftSummary:
    """Compare the newest batches with the champion's training data; decide on retraining."""
    inputs = load_drift_inputs()
    report = evaluate_drift(inputs, force_retrain)
    persist_drift_report(report)
    summary = report.summary()
    get_run_logger().info(
        "drift report %s: data drift=%s %s, concept drift=%s (accuracy %s), retrain=%s: %s",
        summary.id,
        summary.data_drift,
        summary.drifted_features,
        summary.concept_drift,
        summary.champion_accuracy,
        summary.retrain,
        summary.reason,
    )
    return summary


if __name__ == "__main__":
    detect_drift()
