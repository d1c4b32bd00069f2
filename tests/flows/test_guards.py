"""Pile-up guard and retry policy: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE
from sqlalchemy.exc import OperationalError

from flows.guards import pileup_reason
from flows.retries import is_transient

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=30)


def test_proceeds_when_on_time_and_alone() -> None:
    reason = pileup_reason(
        now=NOW,
        scheduled_start=NOW - timedelta(seconds=5),
        interval=INTERVAL,
        earlier_active_runs=[],
    )
    assert reason is None


def test_skips_when_an_earlier_run_is_active() -> None:
    reason = pileup_reason(
        now=NOW, scheduled_start=NOW, interval=INTERVAL, earlier_active_runs=["a"]
    )
    assert reason is not None and "still active" in reason and "a" in reason


def test_skips_when_late_by_more_than_one_interval() -> None:
    reason = pileup_reason(
        now=NOW,
        scheduled_start=NOW - timedelta(seconds=31),
        interval=INTERVAL,
        earlier_active_runs=[],
    )
    assert reason is not None and "late by 31 s" in reason


def test_exactly_one_interval_late_still_runs() -> None:
    assert (
        pileup_reason(
            now=NOW, scheduled_start=NOW - INTERVAL, interval=INTERVAL, earlier_active_runs=[]
        )
        is None
    )


def test_no_schedule_means_no_lateness() -> None:
    assert (
        pileup_reason(now=NOW, scheduled_start=None, interval=INTERVAL, earlier_active_runs=[])
        is None
    )


def test_transient_errors_are_retried_and_logic_errors_are_not() -> None:
    assert is_transient(httpx.ConnectError("refused"))
    assert is_transient(OperationalError("SELECT 1", {}, Exception("database is locked")))
    assert is_transient(MlflowException("boom", error_code=TEMPORARILY_UNAVAILABLE))
    assert is_transient(ConnectionRefusedError())
    assert not is_transient(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    assert not is_transient(ValueError("single class"))
    assert not is_transient(LookupError("no batch"))
    assert not is_transient(None)
