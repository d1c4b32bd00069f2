"""Factory: a project database holding a few cycles' batches and drift reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from ia_continu.data.sources import SyntheticSource
from ia_continu.data.storage import repository
from ia_continu.monitoring.concept_drift import ErrorCount, detect_concept_drift

Cycle = tuple[float | None, int | None, bool, str]  # accuracy, champion version, drifted, reason

BATCH_ROWS = 20
VALIDATION = ErrorCount(100, 20)  # every champion's reference: accuracy 0.8 on 100 rows


def performance(accuracy: float, batch_id: int, legacy: bool = False) -> dict[str, Any]:
    """The ``performance`` section of a report whose champion scored ``accuracy`` on a
    20-row batch: the concept-drift detector's own output (reference accuracy 0.8), or,
    with ``legacy``, the accuracy-floor rule's (``validation_accuracy``, ``floor``,
    ``tolerance``), as reports stored before issue 12 hold it."""
    if legacy:
        return {
            "accuracy": accuracy,
            "validation_accuracy": 0.8,
            "floor": 0.6,
            "tolerance": 0.05,
            "n": BATCH_ROWS,
            "drift": accuracy < 0.6,
            "reason": "legacy",
        }
    errors = round((1 - accuracy) * BATCH_ROWS)
    return detect_concept_drift(
        ErrorCount(BATCH_ROWS, errors), batch_id, validation=VALIDATION
    ).to_dict()


def drift_report(
    accuracy: float | None,
    version: int | None,
    drifted: bool,
    reason: str,
    batch_id: int = 1,
    legacy: bool = False,
) -> dict[str, Any]:
    """A stored-report body like the flows write: two features, performance, decision."""
    features = [
        {
            "feature": "x",
            "test": "ks",
            "statistic": 0.3 if drifted else 0.01,
            "effect": 0.2,
            "psi": 0.1,
            "p_adjusted": 0.001,
            "drifted": drifted,
        },
        {
            "feature": "c",
            "test": "chi2",
            "statistic": 1.0,
            "effect": 0.0,
            "psi": 0.0,
            "p_adjusted": 0.9,
            "drifted": False,
        },
    ]
    scored = performance(accuracy, batch_id, legacy) if version and accuracy is not None else None
    return {
        "data_drift": {"features": features, "drift": drifted} if version else None,
        "performance": scored,
        "decision": {"reason": reason},
    }


def store_cycles(engine: Engine, plan: list[Cycle], legacy: int = 0) -> None:
    """Ingest one 20-row batch per cycle of ``plan`` and store its drift report; the first
    ``legacy`` reports are in the format of the accuracy-floor rule (before issue 12)."""
    source = SyntheticSource(mode="stable", batch_size=BATCH_ROWS)
    for i, (accuracy, version, drifted, reason) in enumerate(plan):
        batch = repository.ingest_next(engine, source, ingest_key=f"k{i}")
        report = drift_report(accuracy, version, drifted, reason, batch.id, legacy=i < legacy)
        repository.save_drift_report(
            engine,
            source=source.name,
            batch_id=batch.id,
            champion_version=version,
            data_drift=drifted,
            concept_drift=bool((report["performance"] or {}).get("drift")),
            retrain=version is None or drifted,
            report=report,
        )
