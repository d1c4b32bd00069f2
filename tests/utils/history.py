"""Factory: a project database holding a few cycles' batches and drift reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from ia_continu.sources import SyntheticSource
from ia_continu.storage import repository

Cycle = tuple[float | None, int | None, bool, str]  # accuracy, champion version, drifted, reason


def drift_report(
    accuracy: float | None, version: int | None, drifted: bool, reason: str
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
    return {
        "data_drift": {"features": features, "drift": drifted} if version else None,
        "performance": {"accuracy": accuracy, "validation_accuracy": 0.8} if version else None,
        "decision": {"reason": reason},
    }


def store_cycles(engine: Engine, plan: list[Cycle]) -> None:
    """Ingest one 20-row batch per cycle of ``plan`` and store its drift report."""
    source = SyntheticSource(mode="stable", batch_size=20)
    for i, (accuracy, version, drifted, reason) in enumerate(plan):
        batch = repository.ingest_next(engine, source, ingest_key=f"k{i}")
        repository.save_drift_report(
            engine,
            source=source.name,
            batch_id=batch.id,
            champion_version=version,
            data_drift=drifted,
            concept_drift=accuracy is not None and accuracy < 0.6,
            retrain=version is None or drifted,
            report=drift_report(accuracy, version, drifted, reason),
        )
