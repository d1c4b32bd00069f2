"""``detect_drift``: reference vs current window, champion accuracy, retrain decision."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.hooks import notify_failure
from flows.tasks import evaluate_drift, load_drift_inputs, persist_drift_report


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The small, JSON-ready view of a drift report that flows pass around."""
    data = report.get("data_drift") or {}
    perf = report.get("performance") or {}
    return {
        "id": report["id"],
        "batch_id": report["batch_id"],
        "champion_version": report["champion_version"],
        "champion_problem": report.get("champion_problem"),
        "data_drift": bool(data.get("drift", False)),
        "data_drift_new": bool(report.get("data_drift_new", False)),
        "drifted_features": data.get("drifted_features", []),
        "concept_drift": bool(perf.get("drift", False)),
        "champion_accuracy": perf.get("accuracy"),
        "reference_accuracy": perf.get("reference_accuracy"),
        "concept_drift_p_value": perf.get("p_value"),
        "change_batch_id": perf.get("change_batch_id"),
        "features": [
            {
                key: item[key]
                for key in ("feature", "test", "statistic", "p_adjusted", "effect", "drifted")
            }
            for item in data.get("features", [])
        ],
        "retrain": report["decision"]["retrain"],
        "trigger": report["decision"].get("trigger"),
        "reason": report["decision"]["reason"],
    }


@flow(name="detect_drift", on_failure=[notify_failure])
def detect_drift(force_retrain: bool = False) -> dict[str, Any]:
    """Compare the newest batches with the champion's training data; decide on retraining."""
    inputs = load_drift_inputs()
    report = evaluate_drift(inputs, force_retrain)
    persist_drift_report(report)
    summary = summarise(report)
    get_run_logger().info(
        "drift report %s: data drift=%s %s, concept drift=%s (accuracy %s), retrain=%s: %s",
        summary["id"],
        summary["data_drift"],
        summary["drifted_features"],
        summary["concept_drift"],
        summary["champion_accuracy"],
        summary["retrain"],
        summary["reason"],
    )
    return summary


if __name__ == "__main__":
    detect_drift()
