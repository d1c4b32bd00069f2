"""The ``ingest_labels`` flow for real: Prefect test harness, SQLite project database, label
files in the inbox and a company database (another SQLite file) as SQL source."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from flows import ingest_labels as flow_module
from flows.hooks import notify_failure
from flows.ingest_labels import ingest_labels
from flows.retries import retry_on_transient
from ia_continu.data import labels
from ia_continu.data.storage import served
from ia_continu.data.storage.migrate import migrate
from ia_continu.settings import get_settings
from tests.utils.serving import drop_label_file, log_write, record, served_rows


@pytest.fixture
def engine(flow_env: Path) -> Engine:
    """The flows' project database with served predictions p0..p5 (alternating classes)."""
    engine = migrate(get_settings().resolved_database_url)
    log_write(engine, record("r1", [i % 2 for i in range(6)], ids=[f"p{i}" for i in range(6)]))
    return engine


async def _flow_run_details(flow_run_id: Any) -> tuple[dict[str, int], list[str]]:
    """Task-run counts by task name, and the log messages, of one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter
    from prefect.client.schemas.filters import LogFilterFlowRunId as LogRun

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        logs = await client.read_logs(LogFilter(flow_run_id=LogRun(any_=[flow_run_id])))
    counts = {run.name.rsplit("-", 1)[0]: run.run_count for run in runs}
    return counts, [log.message for log in logs]


def test_the_flow_joins_inbox_files_and_sql_labels(
    engine: Engine, flow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    company = flow_env / "company.db"
    with sqlite3.connect(company) as connection:
        connection.execute("CREATE TABLE truth (prediction_id TEXT, label INTEGER)")
        connection.executemany("INSERT INTO truth VALUES (?, ?)", [("p4", 0), ("p5", 1)])
    connection.close()
    monkeypatch.setenv("IAC_LABELS_SQL_URL", f"sqlite:///{company}")
    monkeypatch.setenv("IAC_LABELS_SQL_QUERY", "SELECT prediction_id, label FROM truth")
    # Far above the time a flow run takes to start: d.csv below is "still being copied".
    monkeypatch.setenv("IAC_LABELS_SETTLE_SECONDS", "30")
    get_settings.cache_clear()
    settings = get_settings()
    drop_label_file(settings, "a.csv", "prediction_id,label\np0,0\np1,1\np1,0\nghost,1\n")
    parquet = flow_env / "b.parquet"
    pd.DataFrame({"prediction_id": ["p2", "p3", ""], "label": [0, 1, 1]}).to_parquet(parquet)
    drop_label_file(settings, "b.parquet", parquet.read_bytes())
    drop_label_file(settings, "c.csv", "id,label\np0,1\n")
    drop_label_file(settings, "d.csv", "prediction_id,label\np3,1\n", age=0.0)  # still being copied

    state = ingest_labels(return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert (result["files_processed"], result["files_rejected"]) == (2, 1)
    assert (result["files_waiting"], result["files_already_seen"]) == (1, 0)
    assert result["rows"] == 4 + 3 + 2
    assert (result["joined"], result["conflicts"], result["unknown"], result["invalid"]) == (
        6,
        1,
        1,
        1,
    )
    assert result["indexed"]["predictions"] == 6 and result["sql"]["joined"] == 2
    assert result["waiting"] == ["d.csv"]
    rejected = next(f for f in result["files"] if f["status"] == "rejected")
    assert rejected["file"] == "c.csv" and "'prediction_id'" in rejected["error"]
    rows = served_rows(engine)
    assert [rows[f"p{i}"].label for i in range(6)] == ["0", "1", "0", "1", "0", "1"]
    inbox = settings.resolved_labels_dir
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["a.csv", "b.parquet"]
    assert [p.name for p in (inbox / "rejected").iterdir()] == ["c.csv"]
    _, messages = asyncio.run(_flow_run_details(state.state_details.flow_run_id))
    (warning,) = [m for m in messages if m.startswith("labels kept aside")]
    assert "a.csv: 1 conflicts, 1 unknown ids" in warning
    assert "b.parquet: 1 invalid rows" in warning and "c.csv: rejected" in warning

    # The next run: the settled file is processed, everything else changes nothing.
    drop_label_file(settings, "d.csv", "prediction_id,label\np3,1\n")
    again = ingest_labels()
    assert (again["files_processed"], again["duplicates"], again["joined"]) == (1, 3, 0)
    assert (again["conflicts"], again["unknown"], again["invalid"]) == (0, 0, 0)
    assert len(served.quarantined_labels(engine)) == 3  # nothing kept aside twice


def test_a_transient_database_error_is_retried_by_prefect(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = labels.ingest_inbox
    calls: list[int] = []

    def flaky(*args: Any) -> labels.InboxResult:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        return real(*args)

    monkeypatch.setattr(flow_module.labels, "ingest_inbox", flaky)
    drop_label_file(get_settings(), "a.csv", "prediction_id,label\np0,0\n")
    state = ingest_labels(return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["joined"] == 1 and len(calls) == 2
    counts, _ = asyncio.run(_flow_run_details(state.state_details.flow_run_id))
    assert counts["ingest-label-inbox"] == 2  # the first attempt and its retry


def test_a_logic_error_is_not_retried_and_fails_the_flow(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def broken(*args: Any) -> labels.InboxResult:
        calls.append(1)
        raise ValueError("a bug")

    monkeypatch.setattr(flow_module.labels, "ingest_inbox", broken)
    state = ingest_labels(return_state=True)
    assert state.is_failed() and "a bug" in str(state.message)
    assert len(calls) == 1
    counts, _ = asyncio.run(_flow_run_details(state.state_details.flow_run_id))
    assert counts == {"ingest-label-inbox": 1}


def test_a_broken_sql_source_fails_the_flow_naming_the_setting(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAC_LABELS_SQL_QUERY", "SELECT 1")  # no IAC_LABELS_SQL_URL
    get_settings.cache_clear()
    drop_label_file(get_settings(), "a.csv", "prediction_id,label\np0,0\n")
    state = ingest_labels(return_state=True)
    assert state.is_failed() and "IAC_LABELS_SQL_URL" in str(state.message)
    assert served_rows(engine)["p0"].label == "0"  # the inbox's work is kept


def test_the_flow_and_its_tasks_are_wired() -> None:
    assert notify_failure in ingest_labels.on_failure
    for task in (flow_module.ingest_label_inbox, flow_module.ingest_label_sql):
        assert task.retries == 2 and task.retry_condition_fn is retry_on_transient
