"""The console's history tables, built from stored drift reports and batches."""

from __future__ import annotations

from pathlib import Path

from ia_continu.data.storage.migrate import migrate
from ia_continu.loop import history
from tests.utils.history import Cycle, store_cycles


def test_history_marks_promotions_and_keeps_time_order(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'h.db'}")
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
    assert frame["reference_accuracy"].tolist()[1:] == [0.8, 0.8, 0.8]
    assert frame["p_value"].notna().tolist() == [False, True, True, True]
    assert list(frame["concept_drift"]) == [False, False, True, False]
    p_values = frame["p_value"].tolist()
    assert p_values[2] < 0.01 < p_values[1]  # 10 errors in 20 rows vs 20 % reference
    assert list(frame["promoted"]) == [False, False, False, True]
    assert list(frame["retrain"]) == [True, False, True, False]
    assert frame.loc[2, "reason"] == "concept drift"
    assert len(history.drift_history(engine, limit=2)) == 2

    features = history.feature_drift(engine)
    assert len(features) == 6 and set(features["feature"]) == {"x", "c"}
    assert features[features["drifted"]]["batch_id"].tolist() == [3]

    ingested = history.batches_ingested(engine)
    assert ingested.loc[0, "batches"] == 4 and ingested.loc[0, "rows"] == 80


def test_reports_of_the_accuracy_floor_rule_show_their_validation_accuracy(
    tmp_path: Path,
) -> None:
    """Reports stored before issue 12 have ``validation_accuracy`` and no p-value: the
    history reads the former as the reference and keeps the column types."""
    engine = migrate(f"sqlite:///{tmp_path / 'old.db'}")
    plan: list[Cycle] = [(0.81, 1, False, "ok"), (0.5, 1, True, "drift"), (0.79, 2, False, "ok")]
    store_cycles(engine, plan, legacy=2)
    frame = history.drift_history(engine)
    assert frame["reference_accuracy"].tolist() == [0.8, 0.8, 0.8]
    assert frame["p_value"].isna().tolist() == [True, True, False]
    assert frame.dtypes["reference_accuracy"] == "float64"
    assert frame.dtypes["p_value"] == "float64"


def test_empty_database_gives_empty_tables(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'e.db'}")
    assert history.drift_history(engine).empty
    assert history.feature_drift(engine).empty
    assert history.batches_ingested(engine).empty
