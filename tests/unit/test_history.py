"""The console's history tables, built from stored drift reports and batches."""

from __future__ import annotations

from pathlib import Path

from ia_continu import history
from ia_continu.sources import SyntheticSource
from ia_continu.storage import repository
from ia_continu.storage.schema import get_engine


def _report(accuracy: float | None, version: int | None, drifted: bool, reason: str) -> dict:
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


def test_history_marks_promotions_and_keeps_time_order(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'h.db'}")
    source = SyntheticSource(mode="stable", batch_size=20)
    plan = [
        (None, None, False, "no champion yet"),
        (0.81, 1, False, "ok"),
        (0.52, 1, True, "concept drift"),
        (0.79, 2, False, "ok"),
    ]
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
            report=_report(accuracy, version, drifted, reason),
        )
    frame = history.drift_history(engine)
    assert list(frame.columns) == history.HISTORY_COLUMNS
    assert list(frame["batch_id"]) == [1, 2, 3, 4]
    assert frame["accuracy"].isna().tolist() == [True, False, False, False]
    assert list(frame["promoted"]) == [False, False, False, True]
    assert list(frame["retrain"]) == [True, False, True, False]
    assert frame.loc[2, "reason"] == "concept drift"
    assert len(history.drift_history(engine, limit=2)) == 2

    features = history.feature_drift(engine)
    assert len(features) == 6 and set(features["feature"]) == {"x", "c"}
    assert features[features["drifted"]]["batch_id"].tolist() == [3]

    ingested = history.batches_ingested(engine)
    assert ingested.loc[0, "batches"] == 4 and ingested.loc[0, "rows"] == 80


def test_empty_database_gives_empty_tables(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'e.db'}")
    assert history.drift_history(engine).empty
    assert history.feature_drift(engine).empty
    assert history.batches_ingested(engine).empty
