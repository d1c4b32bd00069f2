"""The served-prediction index and the label join, on a real SQLite database at Alembic head."""

from __future__ import annotations

import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from ia_continu.data.storage import served
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import QuarantinedLabelRow
from tests.utils.serving import RECORD_TIME, log_write, record, served_rows


def frame(*rows: tuple[Any, Any]) -> pd.DataFrame:
    """Labels as ``join_labels`` takes them: (id, label) pairs, data rows 1.."""
    return pd.DataFrame(
        {
            "prediction_id": [r[0] for r in rows],
            "label": [r[1] for r in rows],
            "row": range(1, len(rows) + 1),
        }
    )


def quarantine(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(QuarantinedLabelRow.__table__).order_by(QuarantinedLabelRow.id)
            )
        )


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return migrate(f"sqlite:///{tmp_path / 'iac.db'}")


@pytest.fixture
def indexed(engine: Engine) -> Engine:
    """Three served predictions: p1 (class 1), p2 (class 0), p3 (class 1)."""
    log_write(engine, record("r1", [1, 0, 1], ids=["p1", "p2", "p3"]))
    served.index_predictions(engine, engine)
    return engine


def test_index_reads_new_and_old_records_once(engine: Engine) -> None:
    log_write(
        engine,
        record("req-a", [1, 0], ids=["order-1", "order-2"]),
        record("req-b", ["yes"]),  # old 7-item record, one row: the request id
        record("req-c", [0, 1]),  # old 7-item record, batch: request_id/i
    )
    result = served.index_predictions(engine, engine)
    assert result == served.IndexResult(writes=1, predictions=5, duplicates=0, resolved=0)
    rows = served_rows(engine)
    assert set(rows) == {"order-1", "order-2", "req-b", "req-c/0", "req-c/1"}
    first = rows["order-1"]
    assert first.prediction == "1" and rows["req-b"].prediction == "yes"  # text
    assert first.features == {"x": 0.0, "c": "a"}
    assert first.probability == pytest.approx(0.5)
    assert first.request_id == "req-a" and first.model_version == 1
    assert first.served_at.replace(tzinfo=UTC).timestamp() == RECORD_TIME
    assert first.label is None and first.position is None
    # Nothing new: nothing indexed again.
    assert served.index_predictions(engine, engine) == served.IndexResult()
    # A later write, with an id served before: the first row is kept.
    log_write(engine, record("req-d", [0, 0], ids=["order-1", "order-3"], created=RECORD_TIME + 5))
    again = served.index_predictions(engine, engine)
    assert (again.writes, again.predictions, again.duplicates) == (1, 1, 1)
    assert served_rows(engine)["order-1"].request_id == "req-a"


def test_index_reads_at_most_max_writes(engine: Engine) -> None:
    for i in range(3):
        log_write(engine, record(f"r{i}", [1]))
    assert served.index_predictions(engine, engine, max_writes=2).writes == 2
    assert served.index_predictions(engine, engine, max_writes=2).writes == 1
    assert len(served_rows(engine)) == 3


def test_a_corrupt_record_is_counted_and_the_rest_indexed(engine: Engine) -> None:
    broken = record("bad", [1, 0], ids=["b1", "b2"])
    broken[4] = broken[4][:1]  # one input row for two predictions
    log_write(engine, broken, record("good", [1], ids=["g1"]))
    result = served.index_predictions(engine, engine)
    assert (result.predictions, result.unreadable) == (1, 1)
    assert set(served_rows(engine)) == {"g1"}
    assert served.index_predictions(engine, engine).writes == 0  # not retried for ever


def test_a_label_joins_exactly_once(indexed: Engine) -> None:
    first = served.join_labels(indexed, frame(("p1", "1"), ("p2", 0)), "a.csv")
    assert (first.rows, first.joined, first.duplicates) == (2, 2, 0)
    before = served_rows(indexed)
    assert before["p1"].label == "1" and before["p2"].label == "0"  # text, like predictions
    assert before["p1"].label_origin == "a.csv row 1"
    assert before["p2"].label_origin == "a.csv row 2"
    assert before["p3"].label is None
    # A second copy (another origin, padded text) changes nothing and is counted.
    again = served.join_labels(
        indexed,
        frame(
            (" p1 ", " 1 "),
        ),
        "b.csv",
    )
    assert again == served.JoinResult(rows=1, duplicates=1)
    after = served_rows(indexed)
    assert after["p1"].labelled_at == before["p1"].labelled_at
    assert after["p1"].label_origin == "a.csv row 1"
    assert quarantine(indexed) == []


def test_a_conflicting_label_is_kept_aside_and_the_first_stays(indexed: Engine) -> None:
    served.join_labels(
        indexed,
        frame(
            ("p1", "1"),
        ),
        "a.csv",
    )
    result = served.join_labels(indexed, frame(("p2", "0"), ("p1", "0")), "b.csv")
    assert (result.joined, result.conflicts) == (1, 1)
    assert served_rows(indexed)["p1"].label == "1"
    (entry,) = quarantine(indexed)
    assert (entry.reason, entry.origin, entry.row, entry.prediction_id, entry.label) == (
        "conflict",
        "b.csv",
        2,
        "p1",
        "0",
    )
    assert "row 2" in entry.detail and "'1'" in entry.detail
    assert entry.resolved_at is None


def test_an_unknown_id_waits_and_joins_when_its_prediction_is_indexed(engine: Engine) -> None:
    result = served.join_labels(engine, frame(("late-1", "spam"), ("late-1", "spam")), "a.csv")
    assert (result.unknown, result.duplicates) == (1, 1)
    (entry,) = quarantine(engine)
    assert (entry.reason, entry.prediction_id, entry.row) == ("unknown_id", "late-1", 1)
    assert served.label_counts(engine).quarantined["unknown_id"] == 1
    log_write(engine, record("r9", ["ham"], ids=["late-1"]))
    index = served.index_predictions(engine, engine)
    assert index.resolved == 1
    row = served_rows(engine)["late-1"]
    assert row.label == "spam" and row.label_origin == "a.csv row 1"
    (entry,) = quarantine(engine)
    assert entry.resolved_at is not None
    counts = served.label_counts(engine)
    assert counts.quarantined["unknown_id"] == 0 and counts.resolved == 1
    assert (counts.predictions, counts.labelled, counts.unlabelled) == (1, 1, 0)


def test_an_unknown_label_that_conflicts_once_resolved_is_kept_as_a_conflict(
    engine: Engine,
) -> None:
    served.join_labels(
        engine,
        frame(
            ("late", "a"),
        ),
        "one.csv",
    )
    served.join_labels(
        engine,
        frame(
            ("late", "b"),
        ),
        "two.csv",
    )
    log_write(engine, record("r", ["x"], ids=["late"]))
    assert served.index_predictions(engine, engine).resolved == 2
    assert served_rows(engine)["late"].label == "a"
    open_entries = served.quarantined_labels(engine)
    assert [(e.reason, e.origin, e.label) for e in open_entries] == [("conflict", "two.csv", "b")]


def test_invalid_rows_are_kept_aside_naming_the_row(indexed: Engine) -> None:
    labels = frame(("", "1"), ("p1", ""), (None, "0"), ("p2", None), ("bad id!", "1"), ("p3", "1"))
    result = served.join_labels(indexed, labels, "a.csv")
    assert (result.rows, result.invalid, result.joined) == (6, 5, 1)
    entries = quarantine(indexed)
    assert [(e.reason, e.row) for e in entries] == [("invalid", r) for r in (1, 2, 3, 4, 5)]
    assert entries[0].detail == "row 1: missing prediction id"
    assert entries[1].detail == "row 2: missing label" and entries[1].prediction_id == "p1"
    assert "malformed prediction id" in entries[4].detail
    assert served_rows(indexed)["p1"].label is None


def test_duplicate_ids_in_one_input_with_different_labels(indexed: Engine) -> None:
    labels = frame(("p1", "1"), ("p1", "1"), ("p1", "0"), ("p2", "0"))
    result = served.join_labels(indexed, labels, "a.csv")
    assert result == served.JoinResult(rows=4, joined=2, duplicates=1, conflicts=1)
    assert served_rows(indexed)["p1"].label == "1"
    (entry,) = quarantine(indexed)
    assert (entry.reason, entry.row, entry.label) == ("conflict", 3, "0")
    assert "row 3" in entry.detail and "row 1" in entry.detail


def test_reading_the_same_input_again_adds_no_second_entry(indexed: Engine) -> None:
    labels = frame(("p1", "1"), ("p1", "0"), ("ghost", "1"), ("", "1"), ("", "1"))
    first = served.join_labels(indexed, labels, "sql")
    again = served.join_labels(indexed, labels, "sql")
    assert (first.conflicts, first.unknown, first.invalid) == (1, 1, 2)
    assert (again.conflicts, again.unknown, again.invalid, again.duplicates) == (1, 1, 2, 1)
    assert len(quarantine(indexed)) == 4  # one conflict, one unknown, two invalid rows
    # Another origin sending the same unknown label is its own entry.
    served.join_labels(
        indexed,
        frame(
            ("ghost", "1"),
        ),
        "other.csv",
    )
    assert len(served.quarantined_labels(indexed, reason="unknown_id")) == 2


def test_counts_always_add_up_to_the_rows(indexed: Engine) -> None:
    labels = frame(("p1", "1"), ("p1", "0"), ("p1", "1"), ("x", "1"), ("", ""), ("p2", "1"))
    r = served.join_labels(indexed, labels, "a.csv")
    assert r.rows == r.joined + r.duplicates + r.conflicts + r.unknown + r.invalid == 6


def test_join_needs_its_three_columns(indexed: Engine) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        served.join_labels(indexed, pd.DataFrame({"prediction_id": ["p1"]}), "a.csv")


def test_ten_thousand_labels_join_in_well_under_a_few_seconds(engine: Engine) -> None:
    n = 10_000
    ids = [f"id-{i}" for i in range(n)]
    log_write(engine, record("big", [i % 2 for i in range(n)], ids=ids))
    started = time.perf_counter()
    assert served.index_predictions(engine, engine).predictions == n
    indexed_in = time.perf_counter() - started
    labels = frame(*[(pid, i % 3) for i, pid in enumerate(ids)])
    started = time.perf_counter()
    result = served.join_labels(engine, labels, "big.csv")
    joined_in = time.perf_counter() - started
    assert result.joined == n
    started = time.perf_counter()
    assert served.join_labels(engine, labels, "big.csv").duplicates == n
    again_in = time.perf_counter() - started
    assert joined_in < 2.0 and again_in < 2.0 and indexed_in < 3.0, (
        indexed_in,
        joined_in,
        again_in,
    )
