"""Fault class "database locked / read-only", on SQLite and PostgreSQL.

* SQLite write-locked by another connection (``BEGIN IMMEDIATE``) for longer than the busy
  timeout: the ingest task fails with "database is locked", Prefect retries it (a
  transient ``OperationalError``), and once the lock is gone the retry stores the batch.
  A lock that outlasts every retry fails the run cleanly: nothing written, a failure
  embed on Discord that carries no row value, and the next run takes the next position.
* SQLite file read-only: the cycle fails cleanly; writable again, the next cycle ingests
  the next position, once.
* PostgreSQL switched to ``default_transaction_read_only``: same promises.

Flows run under the Prefect test harness, Discord is the local fake. The busy timeout is
lowered to 1 s (``storage_engine.SQLITE_BUSY_TIMEOUT_MS``) so that each attempt is short.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pendulum
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterStartTime,
    TaskRunFilterState,
    TaskRunFilterStateName,
)
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from flows.generate import generate
from flows.retries import is_transient
from ia_continu.data.sources import build_source
from ia_continu.data.storage import engine as storage_engine
from ia_continu.data.storage import repository
from ia_continu.data.storage.engine import get_engine
from ia_continu.data.storage.migrate import migrate
from ia_continu.loop import cycle
from ia_continu.settings import Settings, get_settings
from tests.utils.fake_discord import FakeDiscord
from tests.utils.servers import postgres

pytestmark = [pytest.mark.faults, pytest.mark.integration]

BATCH = 50


@pytest.fixture
def sqlite_env(
    _prefect: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, discord: FakeDiscord
) -> Settings:
    monkeypatch.setattr(storage_engine, "SQLITE_BUSY_TIMEOUT_MS", 1000)
    for key, value in {
        "IAC_DATA_DIR": str(tmp_path / "state"),
        "IAC_DATA_SOURCE": "synthetic",
        "IAC_BATCH_SIZE": str(BATCH),
        "IAC_DISCORD_WEBHOOK_URL": discord.url,
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    storage_engine.get_engine.cache_clear()  # engines read the busy timeout when they connect
    migrate(get_settings().resolved_database_url)  # as the bootstrap does before any flow
    return get_settings()


def _positions(settings: Settings) -> list[int]:
    engine = get_engine(settings.resolved_database_url)
    return repository.stream_positions(engine, build_source(settings).name)


def _db_file(settings: Settings) -> Path:
    return Path(settings.resolved_database_url.removeprefix("sqlite:///"))


@contextmanager
def _write_lock(db_file: Path) -> Iterator[threading.Event]:
    """Hold SQLite's write lock from another connection until the yielded event is set."""
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(db_file, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait(120)
            connection.execute("ROLLBACK")
        finally:
            connection.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(30), "could not take the write lock"
    try:
        yield release
    finally:
        release.set()
        holder.join(30)


def _ingest_task_runs(flow_run_id: Any) -> list[Any]:
    with get_client(sync_client=True) as client:
        return list(
            client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        )


def _await_a_retry(since: pendulum.DateTime, timeout: float = 90) -> bool:
    """True once a task run that started after ``since`` waits for its retry."""
    deadline = time.monotonic() + timeout
    state_filter = TaskRunFilterState(
        name=TaskRunFilterStateName(any_=["AwaitingRetry", "Retrying"])
    )
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    state=state_filter, start_time=TaskRunFilterStartTime(after_=since)
                )
            )
            if runs:
                return True
            time.sleep(0.2)
    return False


def test_sqlite_locked_past_the_busy_timeout_is_retried(sqlite_env: Settings) -> None:
    settings = sqlite_env
    for key in ("a", "b"):
        generate(ingest_key=key)
    since = pendulum.now("UTC").subtract(seconds=1)
    outcome: dict[str, Any] = {}
    with _write_lock(_db_file(settings)) as release:

        def run() -> None:
            outcome["state"] = generate(ingest_key="c", return_state=True)
            outcome["done"] = time.monotonic()

        runner = threading.Thread(target=run)
        runner.start()
        # Let the first attempt fail on the lock, then end the fault while Prefect waits.
        assert _await_a_retry(since), "the locked ingest was not retried"
        released = time.monotonic()
        release.set()
        runner.join(120)
    state = outcome["state"]
    assert state.is_completed(), state
    recovered = outcome["done"] - released
    assert recovered < 60  # bound only: the loop's interval is 30 s
    print(f"locked SQLite: recovered {recovered:.1f} s after the lock was released")
    (task_run,) = _ingest_task_runs(state.state_details.flow_run_id)
    assert task_run.run_count == 2  # failed on the lock, then retried once
    assert state.result().position == 2
    assert _positions(settings) == [0, 1, 2]


def test_sqlite_lock_outlasting_the_retries_fails_cleanly_then_resumes(
    sqlite_env: Settings, discord: FakeDiscord
) -> None:
    settings = sqlite_env
    for key in ("a", "b"):
        generate(ingest_key=key)
    # The rows the failed insert would have carried: none may reach Discord.
    row_value = repr(float(build_source(settings).batch(2).iloc[0, 0]))
    with _write_lock(_db_file(settings)):
        state = generate(ingest_key="c", return_state=True)
        assert state.is_failed()
        assert "database is locked" in str(state.message)
        (task_run,) = _ingest_task_runs(state.state_details.flow_run_id)
        assert task_run.run_count == 3  # the first attempt and IO_RETRIES' two retries
        assert _positions(settings) == [0, 1]  # nothing half-written
    failures = [
        embed
        for message in discord.received
        for embed in message.get("embeds", [])
        if embed.get("title") == "generate failed"
    ]
    assert len(failures) == 1
    assert "database is locked" in failures[0]["description"]
    assert "parameters hidden" in failures[0]["description"]
    assert row_value[:12] not in str(discord.received)
    # The fault is over: the next run takes position 2, once.
    assert generate(ingest_key="d").position == 2
    assert generate(ingest_key="d").created is False
    assert generate(ingest_key="e").position == 3
    assert _positions(settings) == [0, 1, 2, 3]


@contextmanager
def _read_only(paths: list[Path]) -> Iterator[None]:
    """Make ``paths`` unwritable, for root too (``chattr +i``), then writable again."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("chattr missing: cannot make a file read-only for root")
        done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True)
        if done.returncode:
            pytest.skip(f"chattr +i refused: {done.stderr.decode().strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *map(str, paths)], check=True)
        return
    modes = {p: p.stat().st_mode for p in paths}
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def _new_process_engine(settings: Settings) -> None:
    # Each flow run is a new process under the worker: forget this process's engines.
    get_engine(settings.resolved_database_url).dispose()
    storage_engine.get_engine.cache_clear()


def test_sqlite_read_only_fails_the_cycle_cleanly_then_resumes(sqlite_env: Settings) -> None:
    settings = sqlite_env
    for key in ("a", "b"):
        cycle.ingest(settings, key)
    _new_process_engine(settings)
    db = _db_file(settings)
    with sqlite3.connect(db) as connection:  # fold the WAL into the file, as a clean stop does
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    paths = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
    with _read_only([*paths, db.parent]):
        with pytest.raises(OperationalError, match="readonly database") as caught:
            cycle.ingest(settings, "c")
        assert is_transient(caught.value)
        assert "parameters hidden" in str(caught.value)
        assert _positions(settings) == [0, 1]
    _new_process_engine(settings)
    again = cycle.ingest(settings, "c")
    assert (again.position, again.created) == (2, True)
    assert cycle.ingest(settings, "c").created is False
    assert cycle.ingest(settings, "d").position == 3
    assert _positions(settings) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres() as url:
        yield url


def _set_read_only(pg_url: str, on: bool) -> None:
    # No pool: the session that SETs the parameter off must not answer the SHOW below.
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text("SET default_transaction_read_only = off"))
            value = "on" if on else "DEFAULT"
            connection.execute(text(f"ALTER SYSTEM SET default_transaction_read_only = {value}"))
            connection.execute(text("SELECT pg_reload_conf()"))
        deadline = time.monotonic() + 30
        expected = "on" if on else "off"
        while time.monotonic() < deadline:  # the reload reaches sessions asynchronously
            with admin.connect() as connection:
                if connection.scalar(text("SHOW default_transaction_read_only")) == expected:
                    return
            time.sleep(0.1)
        raise AssertionError("PostgreSQL did not apply default_transaction_read_only")
    finally:
        admin.dispose()


def test_postgres_read_only_fails_the_cycle_cleanly_then_resumes(
    pg_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=pg_url, data_source="synthetic", batch_size=BATCH
    )
    migrate(pg_url)  # as the bootstrap does before any flow
    for key in ("a", "b"):
        cycle.ingest(settings, key)
    row_value = repr(float(build_source(settings).batch(2).iloc[0, 0]))
    _set_read_only(pg_url, True)
    try:
        time.sleep(0.5)  # pooled sessions apply the reload at their next statement
        with pytest.raises(DBAPIError, match="read-only transaction") as caught:
            cycle.ingest(settings, "c")
        assert row_value[:12] not in str(caught.value)
        assert "parameters hidden" in str(caught.value)
        assert _positions(settings) == [0, 1]
    finally:
        _set_read_only(pg_url, False)
    again = cycle.ingest(settings, "c")
    assert (again.position, again.created) == (2, True)
    assert cycle.ingest(settings, "c").created is False
    assert cycle.ingest(settings, "d").position == 3
    assert _positions(settings) == [0, 1, 2, 3]
