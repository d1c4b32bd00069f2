"""Storage: Alembic schema, idempotent ingestion, frame round trip, drift reports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, func, inspect, select, text
from sqlalchemy.orm import Session

from ia_continu.data.sources import ReplaySource, Schema, StreamExhausted, SyntheticSource
from ia_continu.data.storage import repository
from ia_continu.data.storage.engine import SCHEMA_HEAD, SchemaNotAtHead, create, get_engine
from ia_continu.data.storage.migrate import alembic_config, head_revision, migrate, upgrade
from ia_continu.data.storage.tables import BatchRow, DriftReportRow
from tests.utils.race import migrate_concurrently

HEAD = "0004"  # bump with each new revision: a forgotten revision fails here


@dataclass
class FrameSource:
    """A ``BatchSource`` serving fixed frames; ``on_batch`` runs before each batch is served."""

    frames: list[pd.DataFrame]
    name: str = "frames"
    schema: Schema = field(
        default_factory=lambda: Schema(features=("x", "s"), categorical=("s",), target="y")
    )
    calls: list[int] = field(default_factory=list)
    on_batch: Callable[[int], None] | None = None

    def batch(self, position: int) -> pd.DataFrame:
        self.calls.append(position)
        if self.on_batch is not None:
            self.on_batch(position)
        return self.frames[position % len(self.frames)]


def _url(tmp_path: Path, name: str = "iac.db") -> str:
    return f"sqlite:///{tmp_path / 'db' / name}"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return _url(tmp_path)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = migrate(db_url)
    yield engine
    engine.dispose()


def _source(batch_size: int = 20) -> SyntheticSource:
    return SyntheticSource(mode="stable", seed=1, batch_size=batch_size)


def _alembic_version(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------


def test_migrate_creates_schema_at_head(tmp_path: Path, engine: Engine) -> None:
    assert (tmp_path / "db" / "iac.db").is_file()  # parent directory created
    tables = set(inspect(engine).get_table_names())
    assert {
        "alembic_version",
        "batches",
        "quarantined_batches",
        "drift_reports",
        "api_tokens",
        "prediction_log",
    } <= tables
    assert _alembic_version(engine) == [HEAD]


def test_get_engine_is_cached_per_url(db_url: str, engine: Engine) -> None:
    assert get_engine(db_url) is engine


def test_get_engine_never_migrates_and_names_the_command(tmp_path: Path) -> None:
    """Only the bootstrap, `ia-continu migrate` and the API's start-up change the schema:
    a flow or the console reaching a database that was never migrated (or is behind)
    stops with the command to run, and creates no table."""
    url = _url(tmp_path, "fresh.db")
    with pytest.raises(SchemaNotAtHead, match=r"fresh\.db is not migrated.*ia-continu migrate"):
        get_engine(url)
    assert inspect(create(url)).get_table_names() == []
    behind = create(url)
    upgrade(behind, "0003")
    with pytest.raises(SchemaNotAtHead, match="at revision 0003; this version needs revision"):
        get_engine(url)
    assert _alembic_version(behind) == ["0003"]
    assert _alembic_version(migrate(url)) == [HEAD]
    assert get_engine(url) is get_engine(url)


def test_the_schema_head_the_code_expects_is_alembics() -> None:
    assert SCHEMA_HEAD == head_revision() == HEAD


def test_sqlite_pragmas_are_set(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 10000


def test_alembic_downgrade_to_base_then_upgrade(db_url: str, engine: Engine) -> None:
    repository.ingest_next(engine, _source())
    engine.dispose()
    command.downgrade(alembic_config(db_url), "base")
    tables = set(inspect(engine).get_table_names())
    assert "batches" not in tables
    assert "drift_reports" not in tables
    assert _alembic_version(engine) == []

    upgrade(engine)
    assert {"batches", "drift_reports"} <= set(inspect(engine).get_table_names())
    assert _alembic_version(engine) == [HEAD]
    assert repository.count_batches(engine) == 0  # data went with the downgrade


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine, HEAD)
    assert _alembic_version(engine) == [HEAD]


def test_alembic_config_escapes_percent() -> None:
    config = alembic_config("postgresql://user:p%40ss@host/db")
    assert config.get_main_option("sqlalchemy.url") == "postgresql://user:p%40ss@host/db"


# --------------------------------------------------------------------------------------
# Ingestion
# --------------------------------------------------------------------------------------


def test_ingest_next_assigns_consecutive_positions(engine: Engine) -> None:
    source = _source()
    infos = [repository.ingest_next(engine, source) for _ in range(3)]
    assert [i.position for i in infos] == [0, 1, 2]
    assert len({i.id for i in infos}) == 3
    assert all(i.created for i in infos)
    assert all(i.source == source.name and i.n_rows == 20 for i in infos)
    assert repository.count_batches(engine) == 3
    assert repository.count_batches(engine, source.name) == 3
    assert repository.count_batches(engine, "other") == 0


def test_ingest_stores_the_source_batch(engine: Engine) -> None:
    source = _source()
    infos = [repository.ingest_next(engine, source) for _ in range(2)]
    loaded = repository.load_frame(engine, [infos[1].id])
    expected = source.batch(1).assign(batch_id=infos[1].id)
    pd.testing.assert_frame_equal(loaded, expected)


def test_ingest_key_is_idempotent(engine: Engine) -> None:
    source = _source()
    first = repository.ingest_next(engine, source, ingest_key="flow-run-1")
    again = repository.ingest_next(engine, source, ingest_key="flow-run-1")
    assert first.created is True
    assert again.created is False
    assert (again.id, again.position, again.n_rows) == (first.id, first.position, first.n_rows)
    assert repository.count_batches(engine) == 1
    other = repository.ingest_next(engine, source, ingest_key="flow-run-2")
    assert (other.position, other.created) == (1, True)
    assert repository.count_batches(engine) == 2


def test_positions_are_per_source(engine: Engine) -> None:
    a = SyntheticSource(mode="stable", seed=1, batch_size=10)
    b = SyntheticSource(mode="stable", seed=2, batch_size=10)
    repository.ingest_next(engine, a)
    repository.ingest_next(engine, a)
    assert repository.ingest_next(engine, b).position == 0
    assert repository.ingest_next(engine, a).position == 2


def test_second_engine_continues_positions(db_url: str, engine: Engine) -> None:
    source = _source()
    repository.ingest_next(engine, source)
    repository.ingest_next(engine, source)
    # What another process does: its own engine on the same file, schema already at head.
    other = create_engine(db_url)
    try:
        upgrade(other)
        info = repository.ingest_next(other, source, ingest_key="other-process")
        assert info.position == 2
        assert repository.ingest_next(other, source, "other-process").created is False
    finally:
        other.dispose()
    assert repository.ingest_next(engine, source).position == 3


def test_concurrent_writer_taking_the_position_is_retried(db_url: str, engine: Engine) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "s": ["a", "b"], "y": ["0", "1"]})
    rival = FrameSource([frame])
    rival_engine = create_engine(db_url)

    def race(position: int) -> None:
        # Another writer commits this very position between our SELECT and our INSERT.
        if position == 0:
            repository.ingest_next(rival_engine, rival, ingest_key="rival")

    source = FrameSource([frame], on_batch=race)
    try:
        info = repository.ingest_next(engine, source, ingest_key="mine")
    finally:
        rival_engine.dispose()
    assert source.calls == [0, 1]
    assert (info.position, info.created) == (1, True)
    assert [b.position for b in repository.latest_batches(engine, "frames", 10)] == [0, 1]


def test_concurrent_writer_with_same_ingest_key_returns_its_batch(
    db_url: str, engine: Engine
) -> None:
    frame = pd.DataFrame({"x": [1.0], "s": ["a"], "y": ["0"]})
    rival_engine = create_engine(db_url)
    stored: list[repository.BatchInfo] = []

    def race(position: int) -> None:
        if not stored:
            stored.append(
                repository.ingest_next(rival_engine, FrameSource([frame]), ingest_key="same")
            )

    try:
        info = repository.ingest_next(engine, FrameSource([frame], on_batch=race), "same")
    finally:
        rival_engine.dispose()
    assert info.created is False
    assert info.id == stored[0].id
    assert repository.count_batches(engine) == 1


def test_ingest_exhausted_stream_raises_and_stores_nothing(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "tiny.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}).to_csv(path, index=False)
    source = ReplaySource(path=path, target="y", batch_size=2, loop=False)
    repository.ingest_next(engine, source)
    repository.ingest_next(engine, source)
    with pytest.raises(StreamExhausted):
        repository.ingest_next(engine, source)
    assert repository.count_batches(engine, source.name) == 2


# --------------------------------------------------------------------------------------
# Reading frames and batch lists
# --------------------------------------------------------------------------------------


def test_load_frame_round_trips_values(engine: Engine) -> None:
    frame = pd.DataFrame(
        {
            "x": [1.5, 0.0, -2.25, 1e300],
            "s": ["a", None, "c", "d"],
            "y": ["UP", "DOWN", None, "DOWN"],
            "n": np.array([1, 2, 3, 4], dtype=np.int64),
        }
    )
    source = FrameSource([frame])
    info = repository.ingest_next(engine, source)
    assert isinstance(info, repository.BatchInfo)
    loaded = repository.load_frame(engine, [info.id])
    assert list(loaded.columns) == ["x", "s", "y", "n", "batch_id"]
    assert list(loaded["x"]) == [1.5, 0.0, -2.25, 1e300]
    assert list(loaded["s"].take([0, 2, 3])) == ["a", "c", "d"]
    assert pd.isna(loaded["s"].iloc[1])  # a missing category stays missing
    assert pd.isna(loaded["y"].iloc[2])  # so does a missing label (an unlabelled row)
    assert list(loaded["n"]) == [1, 2, 3, 4]
    assert set(loaded["batch_id"]) == {info.id}
    # The stored JSON holds null, not NaN (PostgreSQL would reject NaN).
    with Session(engine) as session:
        row = session.get(BatchRow, info.id)
        assert row is not None
        assert row.rows[1][1] is None
        assert row.rows[2][2] is None
        assert row.columns == ["x", "s", "y", "n"]


# --------------------------------------------------------------------------------------
# Validation at ingest and quarantine
# --------------------------------------------------------------------------------------

POISONED = pd.DataFrame(
    {
        "x": [1.5, np.inf, np.nan, "secret-text", -np.inf, 2.0],
        "s": ["a", "b", "c", "d", "e", "f"],
        "y": ["0", "1", "0", "1", "0", "1"],
    }
)
GOOD = pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", None], "y": ["0", "1", "0"]})


def test_invalid_batch_is_quarantined_with_its_reason_and_raw_rows(engine: Engine) -> None:
    source = FrameSource([GOOD, POISONED, GOOD])
    first = repository.ingest_next(engine, source)
    held = repository.ingest_next(engine, source, ingest_key="run-2")
    third = repository.ingest_next(engine, source)
    assert isinstance(first, repository.BatchInfo) and isinstance(third, repository.BatchInfo)
    assert isinstance(held, repository.QuarantinedBatch)
    assert (held.position, held.n_rows, held.created) == (1, 6, True)
    assert third.position == 2  # the stream moved past the rejected batch, once
    assert repository.stream_positions(engine, "frames") == [0, 1, 2]
    assert repository.count_batches(engine, "frames") == 2
    assert [b.position for b in repository.latest_batches(engine, "frames", 5)] == [0, 2]
    # The reason names columns, rows and rules, never a cell value.
    assert held.reason.startswith("4 failure(s): ")
    for part in ["column 'x' row 1: infinite", "row 2: missing", "row 3: not a number"]:
        assert part in held.reason
    assert "secret-text" not in held.reason
    assert {"column": "x", "row": 4, "check": "infinite"} in held.failures
    # Nothing is lost: the rows are kept as served (inf as the text "inf", NaN as null).
    raw = repository.load_quarantined_frame(engine, held.id)
    assert list(raw.columns) == ["x", "s", "y"]
    assert list(raw["x"].take([0, 1, 3, 4, 5])) == [1.5, "inf", "secret-text", "-inf", 2.0]
    assert raw["x"].iloc[2] is None
    assert list(raw["s"]) == list(POISONED["s"])
    listed = repository.quarantined_batches(engine, "frames")
    assert [(q.id, q.position, q.reason) for q in listed] == [(held.id, 1, held.reason)]
    assert repository.quarantined_batches(engine, "other") == []
    with pytest.raises(KeyError, match="999"):
        repository.load_quarantined_frame(engine, 999)


def test_quarantine_is_idempotent_on_the_ingest_key(engine: Engine) -> None:
    source = FrameSource([POISONED])
    held = repository.ingest_next(engine, source, ingest_key="run-1")
    again = repository.ingest_next(engine, source, ingest_key="run-1")
    assert isinstance(again, repository.QuarantinedBatch)
    assert (again.id, again.position, again.created) == (held.id, 0, False)
    assert source.calls == [0]  # the retry read nothing from the source
    assert repository.stream_positions(engine, "frames") == [0]


def test_too_few_rows_is_quarantined(engine: Engine) -> None:
    source = FrameSource([GOOD.head(1), GOOD])
    held = repository.ingest_next(engine, source, min_rows=2)
    assert isinstance(held, repository.QuarantinedBatch)
    assert "too few labelled rows" in held.reason and "IAC_MIN_BATCH_ROWS=2" in held.reason
    assert isinstance(repository.ingest_next(engine, source, min_rows=2), repository.BatchInfo)


def test_a_failed_write_stores_nothing_and_its_error_shows_no_row(engine: Engine) -> None:
    """SQLAlchemy errors print bound parameters (the batch rows) unless the engine hides them."""
    from sqlalchemy.exc import StatementError

    marker = "row-value-that-must-not-leak"
    frame = pd.DataFrame({"x": [1.0, 2.0], "s": [marker, "b"], "y": ["0", "1"]})
    with engine.begin() as connection:  # a trigger that refuses every insert
        connection.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON batches "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
    with pytest.raises(StatementError) as caught:
        repository.ingest_next(engine, FrameSource([frame]), ingest_key="k")
    assert "refused" in str(caught.value)
    assert marker not in str(caught.value)
    assert marker not in repr(caught.value)
    assert repository.stream_positions(engine, "frames") == []


def test_load_frame_concatenates_in_position_order(engine: Engine) -> None:
    source = _source(batch_size=5)
    infos = [repository.ingest_next(engine, source) for _ in range(3)]
    loaded = repository.load_frame(engine, [infos[2].id, infos[0].id])
    assert list(loaded["batch_id"]) == [infos[0].id] * 5 + [infos[2].id] * 5
    assert list(loaded.index) == list(range(10))
    np.testing.assert_allclose(loaded["feature1"].iloc[:5], source.batch(0)["feature1"])
    np.testing.assert_allclose(loaded["feature1"].iloc[5:], source.batch(2)["feature1"])


def test_load_frame_missing_id_raises_key_error(engine: Engine) -> None:
    info = repository.ingest_next(engine, _source())
    with pytest.raises(KeyError, match="999"):
        repository.load_frame(engine, [info.id, 999])
    with pytest.raises(ValueError, match="at least one"):
        repository.load_frame(engine, [])


def test_latest_batches_oldest_first(engine: Engine) -> None:
    source = _source(batch_size=10)
    infos = [repository.ingest_next(engine, source) for _ in range(5)]
    latest = repository.latest_batches(engine, source.name, 3)
    assert [b.position for b in latest] == [2, 3, 4]
    assert [b.id for b in latest] == [i.id for i in infos[2:]]
    assert [b.position for b in repository.latest_batches(engine, source.name, 10)] == list(
        range(5)
    )
    assert repository.latest_batches(engine, "unknown", 3) == []


# --------------------------------------------------------------------------------------
# Drift reports
# --------------------------------------------------------------------------------------


def _save_report(engine: Engine, batch_id: int, report_id: str | None = None, **flags: bool) -> str:
    return repository.save_drift_report(
        engine,
        source="synthetic",
        batch_id=batch_id,
        champion_version=3,
        data_drift=flags.get("data_drift", True),
        concept_drift=flags.get("concept_drift", False),
        retrain=flags.get("retrain", False),
        report={"features": [{"feature": "x", "p_value": 0.01}], "nested": {"a": [1, 2]}},
        report_id=report_id,
    )


def _count_reports(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count(DriftReportRow.id))) or 0)


def test_save_drift_report_returns_fresh_uuid_hex(engine: Engine) -> None:
    batch = repository.ingest_next(engine, _source())
    first = _save_report(engine, batch.id)
    second = _save_report(engine, batch.id)
    assert first != second
    assert len(first) == 32
    int(first, 16)
    assert _count_reports(engine) == 2


def test_save_drift_report_is_idempotent_on_report_id(engine: Engine) -> None:
    batch = repository.ingest_next(engine, _source())
    report_id = "a" * 32
    assert _save_report(engine, batch.id, report_id, retrain=True) == report_id
    assert _save_report(engine, batch.id, report_id, retrain=False) == report_id
    assert _count_reports(engine) == 1
    assert repository.get_drift_report(engine, report_id)["retrain"] is True  # first write kept


def test_get_drift_report_round_trip(engine: Engine) -> None:
    batch = repository.ingest_next(engine, _source())
    report_id = _save_report(engine, batch.id, data_drift=True, concept_drift=True, retrain=True)
    stored = repository.get_drift_report(engine, report_id)
    assert stored["id"] == report_id
    assert stored["batch_id"] == batch.id
    assert stored["champion_version"] == 3
    assert (stored["data_drift"], stored["concept_drift"], stored["retrain"]) == (True, True, True)
    assert stored["mlflow_run_id"] is None
    assert stored["report"] == {
        "features": [{"feature": "x", "p_value": 0.01}],
        "nested": {"a": [1, 2]},
    }
    assert isinstance(stored["created_at"], str)


def test_get_drift_report_missing_raises_key_error(engine: Engine) -> None:
    with pytest.raises(KeyError, match="nope"):
        repository.get_drift_report(engine, "nope")


def test_attach_mlflow_run(engine: Engine) -> None:
    batch = repository.ingest_next(engine, _source())
    report_id = _save_report(engine, batch.id)
    repository.attach_mlflow_run(engine, report_id, "0123456789abcdef")
    assert repository.get_drift_report(engine, report_id)["mlflow_run_id"] == "0123456789abcdef"
    with pytest.raises(KeyError, match="missing"):
        repository.attach_mlflow_run(engine, "missing", "run")


def test_drift_report_needs_an_existing_batch(engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        _save_report(engine, batch_id=12345)


def test_concurrent_migrations_are_serialised(tmp_path: Path) -> None:
    """The API, the bootstrap and a worker may all start at once on a fresh database."""
    results = migrate_concurrently(f"sqlite:///{tmp_path / 'race.db'}", tmp_path)
    assert [code for code, _ in results] == [0] * len(results), results


def test_migrations_match_the_table_definitions(engine: Engine) -> None:
    """tables.py and the Alembic revisions describe the same schema (autogenerate finds nothing)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ia_continu.data.storage.tables import Base

    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_head_revision_is_the_newest_migration() -> None:

    assert head_revision() == HEAD
