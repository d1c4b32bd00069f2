"""Serving source: seed positions, label delay, exactly-once consumption of served
predictions, class mapping, quarantine, crash safety and the serving window.

Real SQLite database (``get_engine`` on ``tmp_path``); served predictions are inserted
directly, as ``storage.served.index_predictions`` would write them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ia_continu.data import serving_source
from ia_continu.data.storage import repository
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import BatchRow, QuarantinedBatchRow, ServedPredictionRow
from ia_continu.settings import Settings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DELAY = timedelta(seconds=60)


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "state",
        "data_source": "serving",
        "serving_seed_source": "synthetic",
        "serving_seed_batches": 1,
        "batch_size": 10,
        "min_batch_rows": 2,
        "label_delay": DELAY,
        "registered_model_name": "clf",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = migrate(settings.resolved_database_url)
    yield engine
    engine.dispose()


def _serve(
    engine: Engine,
    n: int,
    *,
    start: datetime = T0,
    step: timedelta = timedelta(seconds=1),
    label: str | None | list[str | None] = "1",
    features: dict[str, Any] | None = None,
    prefix: str = "p",
) -> list[str]:
    """Insert ``n`` served predictions ``prefix0..`` at ``start``, ``start + step``, ..."""
    labels = label if isinstance(label, list) else [label] * n
    ids = [f"{prefix}{i:04d}" for i in range(n)]
    with Session(engine) as session:
        for i, pid in enumerate(ids):
            session.add(
                ServedPredictionRow(
                    prediction_id=pid,
                    write_id=1,
                    served_at=start + i * step,
                    request_id=f"r{i}",
                    model_name="clf",
                    model_version=1,
                    features=features if features is not None else {"feature1": i, "feature2": -i},
                    prediction="1",
                    probability=0.8,
                    label=labels[i],
                    labelled_at=None if labels[i] is None else start + i * step,
                    label_origin=None if labels[i] is None else "labels.csv",
                )
            )
        session.commit()
    return ids


def _positions(engine: Engine) -> dict[str, int | None]:
    with Session(engine) as session:
        rows = (
            session.execute(select(ServedPredictionRow.prediction_id, ServedPredictionRow.position))
            .tuples()
            .all()
        )
        return dict(rows)


def _seeded(settings: Settings) -> dict[str, Any]:
    out = serving_source.ingest(settings, "seed-run", now=T0)
    assert out.position == 0 and out.batch_id is not None
    return out


def test_name_schema_and_seed_source_follow_the_settings(settings: Settings) -> None:
    assert serving_source.source_name(settings) == "serving:clf"
    seed = serving_source.seed_source(settings)
    assert seed.name.startswith("synthetic:") and seed.name.endswith(":n=10")
    assert serving_source.schema(settings).classes == (0, 1)
    stream = serving_source.stream(settings)
    assert stream.name == "serving:clf"
    pd.testing.assert_frame_equal(stream.batch(0), seed.batch(0))
    with pytest.raises(ValueError, match="not a seed position"):
        stream.batch(1)


def test_seed_positions_come_first_from_the_seed_source(tmp_path: Path, engine: Engine) -> None:
    settings = _settings(tmp_path, serving_seed_batches=2)
    _serve(engine, 5, start=T0 - timedelta(hours=1))  # served traffic waits for the seed
    first = serving_source.ingest(settings, "a", now=T0)
    second = serving_source.ingest(settings, "b", now=T0)
    assert [first.position, second.position] == [0, 1]
    assert first.served_rows == 0 and first.labelled_share is None
    assert first.n_rows == 10 and first.created and not first.quarantined
    seed = serving_source.seed_source(settings)
    stored = repository.load_frame(engine, [first.batch_id, second.batch_id])
    expected = pd.concat([seed.batch(0), seed.batch(1)], ignore_index=True)
    pd.testing.assert_frame_equal(stored.drop(columns="batch_id"), expected)
    assert set(_positions(engine).values()) == {None}
    third = serving_source.ingest(settings, "c", now=T0)
    assert third.position == 2 and third.served_rows == 5
    assert set(_positions(engine).values()) == {2}
    assert repository.stream_positions(engine, "serving:clf") == [0, 1, 2]


def test_a_prediction_younger_than_the_delay_is_never_batched(
    settings: Settings, engine: Engine
) -> None:
    _seeded(settings)
    _serve(engine, 3, start=T0, label="1")
    # 59 s after the newest: only the first two are old enough.
    now = T0 + timedelta(seconds=2) + DELAY - timedelta(seconds=1)
    out = serving_source.ingest(settings, "r1", now=now)
    assert out.served_rows == 2 and out.n_rows == 2
    assert _positions(engine) == {"p0000": 1, "p0001": 1, "p0002": None}
    nothing = serving_source.ingest(settings, "r2", now=now)
    assert nothing.batch_id is None and not nothing.created and not nothing.quarantined
    assert nothing.reason == (
        "no served prediction older than IAC_LABEL_DELAY (60 s) yet; 1 waiting"
    )
    assert nothing.position == 2 and nothing.served_rows == 0
    assert repository.stream_positions(engine, "serving:clf") == [0, 1]
    later = serving_source.ingest(settings, "r3", now=now + timedelta(seconds=1))
    assert later.position == 2 and later.n_rows == 1
    assert _positions(engine)["p0002"] == 2


def test_each_prediction_is_consumed_exactly_once_in_served_order(
    settings: Settings, engine: Engine
) -> None:
    _seeded(settings)
    # Inserted newest first: the batch order is served_at, then prediction_id.
    _serve(engine, 25, start=T0 - timedelta(hours=1), step=timedelta(seconds=-1))
    _serve(engine, 2, start=T0 - timedelta(hours=2), prefix="same")
    with Session(engine) as session:  # two predictions served at the same instant
        for row in session.scalars(
            select(ServedPredictionRow).where(ServedPredictionRow.prediction_id.like("same%"))
        ):
            row.served_at = T0 - timedelta(hours=2)
        session.commit()
    outs = [serving_source.ingest(settings, f"run{i}", now=T0) for i in range(5)]
    assert [o.served_rows for o in outs] == [10, 10, 7, 0, 0]
    assert [o.position for o in outs] == [1, 2, 3, 4, 4]
    positions = _positions(engine)
    assert all(p is not None for p in positions.values())
    assert list(positions.values()).count(1) == 10
    first = repository.load_frame(engine, [outs[0].batch_id])
    # same0000/same0001 (2 h ago, id order), then p0024, p0023, ... (oldest first).
    assert first["feature1"].tolist()[:4] == [0, 1, 24, 23]
    total = sum(o.n_rows for o in outs)
    assert total == 27
    with Session(engine) as session:
        rows = session.scalar(
            select(func.sum(BatchRow.n_rows)).where(BatchRow.source == "serving:clf")
        )
    assert rows == 10 + 27  # the seed batch + every served prediction once


def test_a_retry_with_the_same_ingest_key_returns_the_same_batch(
    settings: Settings, engine: Engine
) -> None:
    _seeded(settings)
    _serve(engine, 4, start=T0 - timedelta(hours=1), label=["1", None, "0", "1"])
    first = serving_source.ingest(settings, "flow-run-7", now=T0)
    _serve(engine, 4, start=T0 - timedelta(minutes=30), prefix="q")
    again = serving_source.ingest(settings, "flow-run-7", now=T0)
    assert first.created and not again.created
    for key in ("batch_id", "source", "position", "n_rows", "served_rows", "labelled_share"):
        assert getattr(again, key) == getattr(first, key), key
    assert first.labelled_share == pytest.approx(3 / 4)
    assert all(p is None for pid, p in _positions(engine).items() if pid.startswith("q"))
    seed_again = serving_source.ingest(settings, "seed-run", now=T0)
    assert seed_again.position == 0 and not seed_again.created
    assert seed_again.served_rows == 0


def test_labelled_share_and_synthetic_int_classes(settings: Settings, engine: Engine) -> None:
    _seeded(settings)
    labels: list[str | None] = ["1", "0", None, "1", None, "0", "1", None, "1", "0"]
    _serve(engine, 10, start=T0 - timedelta(hours=1), label=labels)
    out = serving_source.ingest(settings, "r", now=T0)
    assert out.served_rows == 10 and out.n_rows == 7
    assert out.labelled_share == pytest.approx(0.7)
    frame = repository.load_frame(engine, [out.batch_id])
    assert frame["target"].tolist() == [1, 0, 1, 0, 1, 1, 0]
    assert all(type(v) is int for v in frame["target"])
    assert frame["feature1"].tolist() == [0, 1, 3, 5, 6, 8, 9]  # the labelled rows, in order


def test_replay_seed_keeps_string_labels(tmp_path: Path) -> None:
    settings = _settings(tmp_path, serving_seed_source="replay", replay_classes=["UP", "DOWN"])
    engine = migrate(settings.resolved_database_url)
    schema = serving_source.schema(settings)
    assert schema.target == "class" and "day" in schema.categorical
    _seeded(settings)
    row = {"day": "2", "period": 0.5, "nswprice": 0.1, "nswdemand": 0.4, "vicprice": 0.0,
           "vicdemand": 0.4, "transfer": 0.4}  # fmt: skip
    _serve(engine, 4, start=T0 - timedelta(hours=1), features=row, label=["UP", "DOWN", "UP", "UP"])
    out = serving_source.ingest(settings, "r", now=T0)
    assert not out.quarantined, out.reason
    frame = repository.load_frame(engine, [out.batch_id])
    assert frame["class"].tolist() == ["UP", "DOWN", "UP", "UP"]
    assert frame["day"].tolist() == ["2"] * 4
    assert list(frame.columns) == [*schema.features, "class", "batch_id"]


def test_labelled_frame_missing_feature_is_nan_and_unknown_label_kept_as_text(
    settings: Settings,
) -> None:
    schema = serving_source.schema(settings)
    rows = [
        ServedPredictionRow(prediction_id="a", features={"feature1": 1.0}, label="1"),
        ServedPredictionRow(prediction_id="b", features={"feature1": 2.0, "feature2": 3.0},
                            label="yes"),
    ]  # fmt: skip
    frame = serving_source.labelled_frame(rows, schema)
    assert list(frame.columns) == ["feature1", "feature2", "target"]
    assert pd.isna(frame.loc[0, "feature2"])
    assert frame["target"].tolist() == [1, "yes"]


@pytest.mark.parametrize(
    ("features", "label", "expected"),
    [
        ({"feature1": 0.1, "feature2": 0.2}, "2", "column 'target' row 0: unknown class"),
        ({"feature1": "abc", "feature2": 0.2}, "1", "column 'feature1' row 0: not a number"),
        ({"feature1": 0.1}, "1", "column 'feature2' row 0: missing"),
    ],
)
def test_a_bad_labelled_batch_is_quarantined_and_its_rows_consumed(
    settings: Settings, engine: Engine, features: dict[str, Any], label: str, expected: str
) -> None:
    _seeded(settings)
    _serve(engine, 3, start=T0 - timedelta(hours=1), features=features, label=[label, label, None])
    out = serving_source.ingest(settings, "bad", now=T0)
    assert out.quarantined and out.batch_id is None and out.created
    assert expected in out.reason
    assert out.position == 1 and out.served_rows == 3 and out.n_rows == 2
    assert set(_positions(engine).values()) == {1}
    held = repository.load_quarantined_frame(engine, out.quarantine_id)
    assert len(held) == 2
    retry = serving_source.ingest(settings, "bad", now=T0)
    assert retry.quarantined and not retry.created
    assert retry.quarantine_id == out.quarantine_id and retry.reason == out.reason


def test_too_few_labelled_rows_quarantines_with_the_setting_named(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, min_batch_rows=5)
    engine = migrate(settings.resolved_database_url)
    _seeded(settings)
    _serve(engine, 10, start=T0 - timedelta(hours=1), label=["1", "0"] + [None] * 8)
    out = serving_source.ingest(settings, "r", now=T0)
    assert out.quarantined
    assert "too few labelled rows: 2 < IAC_MIN_BATCH_ROWS=5" in out.reason
    assert out.labelled_share == pytest.approx(0.2)


def test_unlabelled_predictions_are_skipped_and_counted_with_the_next_position(
    settings: Settings, engine: Engine
) -> None:
    _seeded(settings)
    _serve(engine, 10, start=T0 - timedelta(hours=2), label=None, prefix="u")
    _serve(engine, 4, start=T0 - timedelta(hours=1), label="0")
    skipped = serving_source.ingest(settings, "r1", now=T0)
    assert skipped.batch_id is None and not skipped.created and not skipped.quarantined
    assert skipped.reason == (
        "10 served predictions older than IAC_LABEL_DELAY (60 s), none labelled: "
        "they are skipped (position 1)"
    )
    assert skipped.served_rows == 10 and skipped.labelled_share == 0.0
    assert repository.stream_positions(engine, "serving:clf") == [0]  # nothing stored
    out = serving_source.ingest(settings, "r2", now=T0)
    assert out.position == 1 and out.n_rows == 4
    assert out.served_rows == 14  # the skipped ones share the position
    assert set(_positions(engine).values()) == {1}


def test_late_labels_count_predictions_labelled_after_they_were_batched(
    settings: Settings, engine: Engine
) -> None:
    _seeded(settings)
    _serve(engine, 4, start=T0 - timedelta(hours=2), label=["1", None, None, "0"])
    _serve(engine, 10, start=T0 - timedelta(hours=3), label=None, prefix="u")
    skipped = serving_source.ingest(settings, "r1", now=T0)  # u*: no label, skipped
    assert skipped.late_labels == 0 and skipped.batch_id is None
    out = serving_source.ingest(settings, "r2", now=T0)
    assert out.n_rows == 2 and out.late_labels == 0 and out.position == 1
    with Session(engine) as session:  # labels land after the predictions were consumed
        for pid in ("p0001", "u0000"):
            row = session.get(ServedPredictionRow, pid)
            assert row is not None
            row.label, row.labelled_at = "1", T0 + timedelta(minutes=5)
        session.commit()
    assert serving_source.late_labels(engine, settings) == 2
    assert serving_source.ingest(settings, "r3", now=T0).late_labels == 2


class _Crash(RuntimeError):
    pass


@pytest.mark.parametrize("where", ["_consume", "_position_counts"])
def test_a_crash_inside_the_transaction_leaves_neither_batch_nor_consumption(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    _seeded(settings)
    _serve(engine, 5, start=T0 - timedelta(hours=1))
    real = getattr(serving_source, where)

    def crash(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)  # the batch is inserted and (then) the rows marked ...
        raise _Crash("worker died")  # ... but the transaction never commits

    monkeypatch.setattr(serving_source, where, crash)
    with pytest.raises(_Crash):
        serving_source.ingest(settings, "run", now=T0)
    assert set(_positions(engine).values()) == {None}
    assert repository.stream_positions(engine, "serving:clf") == [0]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedBatchRow)) == 0
    monkeypatch.undo()
    out = serving_source.ingest(settings, "run", now=T0)
    assert out.created and out.position == 1 and out.n_rows == 5
    assert set(_positions(engine).values()) == {1}


@pytest.mark.parametrize("other_stores", [True, False])
def test_a_concurrent_consumer_is_detected_and_the_next_rows_taken(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch, other_stores: bool
) -> None:
    """Another worker consumes the same selection between our read and our write: it
    stored a batch at the position (unique constraint) or skipped the rows without
    storing (guarded update); either way we roll back and take the next rows."""
    _seeded(settings)
    _serve(engine, 15, start=T0 - timedelta(hours=1))
    real = serving_source.labelled_frame
    raced: list[bool] = []

    def racing(rows: Any, schema: Any) -> pd.DataFrame:
        if not raced:
            raced.append(True)
            with Session(engine) as other:
                if other_stores:
                    other.add(BatchRow(source="serving:clf", position=1, n_rows=10,
                                       ingest_key="other", created_at=T0, columns=[],
                                       rows=[]))  # fmt: skip
                for row in rows:
                    other_row = other.get(ServedPredictionRow, row.prediction_id)
                    assert other_row is not None
                    other_row.position = 1
                other.commit()
        return real(rows, schema)

    monkeypatch.setattr(serving_source, "labelled_frame", racing)
    out = serving_source.ingest(settings, "mine", now=T0)
    assert raced and out.created and out.n_rows == 5
    assert out.position == (2 if other_stores else 1)
    positions = [p for p in _positions(engine).values() if p is not None]
    assert len(positions) == 15


def test_serving_window_newest_rows_oldest_first(tmp_path: Path) -> None:
    settings = _settings(tmp_path, serving_window_rows=10, batch_size=20)
    engine = migrate(settings.resolved_database_url)
    empty = serving_source.serving_window(settings, engine)
    assert empty.empty
    assert list(empty.columns) == ["feature1", "feature2", *serving_source.WINDOW_COLUMNS]
    assert serving_source.label_coverage(empty) is None
    labels: list[str | None] = [None if i % 4 else "1" for i in range(14)]
    _serve(engine, 14, start=T0, label=labels)
    window = serving_source.serving_window(settings, engine)
    assert len(window) == 10
    assert window["feature1"].tolist() == list(range(4, 14))
    assert window["served_at"].is_monotonic_increasing
    assert window["served_at"].iloc[-1] == pd.Timestamp(T0 + timedelta(seconds=13))
    assert str(window["served_at"].dt.tz) == "UTC"
    assert window["label"].tolist() == [labels[i] for i in range(4, 14)]
    assert window["prediction"].tolist() == ["1"] * 10
    assert window["probability"].tolist() == [0.8] * 10
    assert window["model_version"].tolist() == [1] * 10
    assert serving_source.label_coverage(window) == pytest.approx(3 / 10)  # rows 4, 8, 12
    before = serving_source.serving_window(settings, engine, now=T0 + timedelta(seconds=5))
    assert before["feature1"].tolist() == list(range(6))
