"""The console's history tables, built from stored drift reports and batches."""

from __future__ import annotations

from pathlib import Path

from ia_continu import history
from ia_continu.storage.schema import get_engine
from tests.utils.history import Cycle, store_cycles


def test_history_marks_promotions_and_keeps_time_order(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'h.db'}")
    plan: list[Cycle] = [
        (None, None, False, "no champion yet"),
        (0.81, 1, False, "ok"),
        (0.52, 1, True, "concept drift"),
        (0.79, 2, False, "ok"),
    ]
    store_cycles(engine, plan)
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
