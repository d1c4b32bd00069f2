"""The project database on a real PostgreSQL server: migrations, exactly-once ingest, JSON."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, make_url, text

from ia_continu.auth.tokens import TokenVerifier, create_token
from ia_continu.data.sources import ReplaySource, SyntheticSource
from ia_continu.data.storage import repository
from ia_continu.data.storage.migrate import head_revision, migrate
from ia_continu.serving.prediction_log import PredictionLog, PredictionRecord, load_predictions
from tests.utils.race import migrate_concurrently
from tests.utils.servers import postgres

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres() as url:
        yield url


def test_alembic_creates_the_schema_on_postgres(pg_url: str) -> None:
    engine = migrate(pg_url)
    tables = {"batches", "quarantined_batches", "drift_reports", "api_tokens", "prediction_log"}
    assert tables <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.scalar(text("select version_num from alembic_version")) == head_revision()


def test_concurrent_migrations_on_postgres(pg_url: str, tmp_path: Path) -> None:
    """API, bootstrap and worker starting together: the advisory lock serialises them."""
    with create_engine(pg_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("CREATE DATABASE race"))
    url = make_url(pg_url).set(database="race").render_as_string(hide_password=False)
    results = migrate_concurrently(url, tmp_path)
    assert [code for code, _ in results] == [0] * len(results), results


def test_tokens_and_prediction_log_on_postgres(pg_url: str) -> None:
    engine = migrate(pg_url)
    info, token = create_token(engine, "pg-robot")
    assert TokenVerifier(engine, cache_seconds=0).verify(token) == info
    log = PredictionLog(engine, flush_seconds=0.01)
    log.start()
    rows = [{"x": 1.5, "city": "Lyon"}, {"x": -2.0, "city": "Nantes"}]
    log.offer(PredictionRecord(time.time(), "req-1", "m", 3, rows, ["UP", "DOWN"], [0.9, 0.7]))
    log.close()
    frame = load_predictions(engine)
    assert list(frame["city"]) == ["Lyon", "Nantes"] and list(frame["model_version"]) == [3, 3]


def test_ingest_is_exactly_once_on_postgres(pg_url: str) -> None:
    engine = migrate(pg_url)
    source = SyntheticSource(batch_size=50, seed=7)
    first = repository.ingest_next(engine, source, "run-a")
    again = repository.ingest_next(engine, source, "run-a")
    second = repository.ingest_next(engine, source, "run-b")
    assert (first.id, first.created) == (again.id, True) and not again.created
    assert second.position == first.position + 1
    frame = repository.load_frame(engine, [first.id])
    expected = source.batch(first.position)
    pd.testing.assert_frame_equal(frame.drop(columns="batch_id"), expected, check_dtype=False)


def test_missing_values_round_trip_as_null_on_postgres(pg_url: str, tmp_path: Path) -> None:
    csv = tmp_path / "gaps.csv"
    csv.write_text("t,colour,x,label\n0,red,1.5,UP\n1,,2.5,\n")
    source = ReplaySource(csv, target="label", time_column="t", categorical=("colour",))
    engine = migrate(pg_url)
    info = repository.ingest_next(engine, source, "gaps")
    frame = repository.load_frame(engine, [info.id])
    assert list(frame["x"]) == [1.5, 2.5]
    assert pd.isna(frame["colour"].iloc[1]) and pd.isna(frame["label"].iloc[1])
    report_id = repository.save_drift_report(
        engine,
        source=source.name,
        batch_id=info.id,
        champion_version=None,
        data_drift=False,
        concept_drift=False,
        retrain=True,
        report={"nested": {"values": [1, 2.5, None]}},
    )
    assert repository.get_drift_report(engine, report_id)["report"]["nested"]["values"] == [
        1,
        2.5,
        None,
    ]


def test_a_quarantined_batch_keeps_its_rows_on_postgres(pg_url: str, tmp_path: Path) -> None:
    """JSON on PostgreSQL has no NaN nor infinity: the raw rows keep them as null / "inf"."""
    csv = tmp_path / "poisoned.csv"
    csv.write_text("t,colour,x,label\n0,red,1.5,UP\n1,blue,inf,DOWN\n2,red,,UP\n3,red,abc,UP\n")
    source = ReplaySource(csv, target="label", time_column="t", categorical=("colour",))
    engine = migrate(pg_url)
    held = repository.ingest_next(engine, source, "poisoned")
    assert isinstance(held, repository.QuarantinedBatch)
    assert held.reason == (
        "3 failure(s): column 'x' row 1: infinite; column 'x' row 2: missing; "
        "column 'x' row 3: not a number"
    )
    raw = repository.load_quarantined_frame(engine, held.id)
    assert raw["x"].tolist() == [1.5, "inf", None, "abc"]
    assert repository.stream_positions(engine, source.name) == [0]
    again = repository.ingest_next(engine, source, "poisoned")
    assert isinstance(again, repository.QuarantinedBatch) and again.created is False
