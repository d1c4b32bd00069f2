"""Pile-up guard and retry policy, called directly (fast: the mutation-testing set)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE
from sqlalchemy.exc import InterfaceError, OperationalError

from flows.guards import (
    STALE_INTERVALS,
    RunRef,
    RunScan,
    crash,
    deployment_interval,
    earlier_active_runs,
    interval_of,
    is_stale,
    pileup_reason,
    split_runs,
    stale_bound,
    stale_message,
    stale_note,
    submitted_at,
)
from flows.retries import IO_RETRIES, is_transient, retry_on_transient

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


# --- stale runs and the tie-break --------------------------------------------------------

A_START = NOW - timedelta(seconds=10)
BOUND = timedelta(seconds=300)


def _ref(run_id: str, since: datetime | None, name: str | None = None) -> RunRef:
    return RunRef(run_id, name or f"run-{run_id}", since)


def test_stale_bound_defaults_to_intervals_and_honours_the_setting() -> None:
    assert stale_bound(INTERVAL) == INTERVAL * STALE_INTERVALS == timedelta(seconds=300)
    assert stale_bound(INTERVAL, 45) == timedelta(seconds=45)
    assert stale_bound(INTERVAL, None) == timedelta(seconds=300)


def test_is_stale_is_strictly_beyond_the_bound() -> None:
    assert not is_stale(NOW - BOUND, NOW, BOUND)
    assert is_stale(NOW - BOUND - timedelta(microseconds=1), NOW, BOUND)
    assert not is_stale(NOW, NOW, BOUND)
    assert not is_stale(None, NOW, BOUND)


def test_split_ignores_itself_and_counts_an_earlier_live_run() -> None:
    scan = split_runs(
        [_ref("b", A_START), _ref("a", A_START - timedelta(seconds=5))],
        own_id="b",
        own_start=A_START,
        now=NOW,
        bound=BOUND,
    )
    assert scan == RunScan(["run-a"], [])


def test_split_ignores_a_run_that_started_later() -> None:
    scan = split_runs(
        [_ref("a", A_START + timedelta(seconds=1))],
        own_id="b",
        own_start=A_START,
        now=NOW,
        bound=BOUND,
    )
    assert scan == RunScan([], [])


def test_tie_on_start_time_is_broken_by_id_so_exactly_one_proceeds() -> None:
    runs = [_ref("a", A_START), _ref("b", A_START)]
    as_a = split_runs(runs, own_id="a", own_start=A_START, now=NOW, bound=BOUND)
    as_b = split_runs(runs, own_id="b", own_start=A_START, now=NOW, bound=BOUND)
    assert as_a.active == [] and as_b.active == ["run-a"]


def test_unknown_start_times_count_as_earlier() -> None:
    """No start time on either side: block rather than risk two cycles at once."""
    assert split_runs(
        [_ref("a", None)], own_id="b", own_start=A_START, now=NOW, bound=BOUND
    ).active == ["run-a"]
    assert split_runs(
        [_ref("c", A_START + timedelta(seconds=5))],
        own_id="b",
        own_start=None,
        now=NOW,
        bound=BOUND,
    ).active == ["run-c"]


def test_a_run_older_than_the_bound_is_stale_not_active() -> None:
    old = _ref("a", NOW - BOUND - timedelta(seconds=1))
    scan = split_runs(
        [old, _ref("c", A_START - timedelta(seconds=1))],
        own_id="b",
        own_start=A_START,
        now=NOW,
        bound=BOUND,
    )
    assert scan.active == ["run-c"]
    assert scan.stale == [old] and scan.stale_names == ["run-a"]


def test_a_run_exactly_at_the_bound_is_still_live() -> None:
    scan = split_runs([_ref("a", NOW - BOUND)], own_id="b", own_start=A_START, now=NOW, bound=BOUND)
    assert scan == RunScan(["run-a"], [])


def test_stale_runs_are_named_when_skipping_and_never_block() -> None:
    assert (
        pileup_reason(
            now=NOW,
            scheduled_start=NOW,
            interval=INTERVAL,
            earlier_active_runs=[],
            stale_runs=["dead-cat"],
        )
        is None
    )
    active = pileup_reason(
        now=NOW,
        scheduled_start=NOW,
        interval=INTERVAL,
        earlier_active_runs=["a", "b"],
        stale_runs=["dead-cat"],
    )
    assert active == (
        "skipped: run(s) a, b still active; stale run(s) dead-cat presumed dead and marked Crashed"
    )
    late = pileup_reason(
        now=NOW,
        scheduled_start=NOW - timedelta(seconds=45),
        interval=INTERVAL,
        earlier_active_runs=[],
        stale_runs=["x", "y"],
    )
    assert late == (
        "skipped: late by 45 s (> 30 s); stale run(s) x, y presumed dead and marked Crashed"
    )


def test_skip_reasons_without_stale_runs_have_no_suffix() -> None:
    assert (
        pileup_reason(now=NOW, scheduled_start=NOW, interval=INTERVAL, earlier_active_runs=["a"])
        == "skipped: run(s) a still active"
    )
    assert (
        pileup_reason(
            now=NOW,
            scheduled_start=NOW - timedelta(seconds=90),
            interval=INTERVAL,
            earlier_active_runs=[],
            stale_runs=[],
        )
        == "skipped: late by 90 s (> 30 s)"
    )


def test_stale_note_and_message() -> None:
    assert stale_note([]) is None
    assert stale_note(["a", "b"]) == "stale run(s) a, b presumed dead and marked Crashed"
    assert stale_message(timedelta(seconds=300)) == (
        "no end after more than 300 s: its process is presumed dead"
        " (IAC_STALE_RUN_SECONDS); marked Crashed by the pile-up guard"
    )


def test_no_deployment_means_nothing_to_check() -> None:
    assert earlier_active_runs(None, "x", bound=BOUND) == RunScan([], [])
    assert earlier_active_runs("", "x", bound=BOUND) == RunScan([], [])


# --- the retry condition, called the way Prefect 2.20 calls it --------------------------


class _FailedState:
    """Stands in for a Prefect ``Failed`` state: ``result(raise_on_failure=False)``."""

    def __init__(self, result: object = None, error: Exception | None = None) -> None:
        self._result, self._error = result, error
        self.calls: list[dict[str, object]] = []

    def result(self, **kwargs: object) -> object:
        self.calls.append(kwargs)
        if self._error is not None:
            raise self._error
        return self._result


def test_retry_condition_accepts_prefects_keyword_call() -> None:
    state = _FailedState(ConnectionError("refused"))
    assert retry_on_transient(task=object(), task_run=object(), state=state) is True
    assert state.calls == [{"raise_on_failure": False}]
    # Prefect's newer engine calls it positionally: same answer.
    assert retry_on_transient(object(), object(), _FailedState(TimeoutError())) is True


def test_retry_condition_refuses_logic_errors_and_odd_results() -> None:
    call = {"task": None, "task_run": None}
    assert retry_on_transient(**call, state=_FailedState(ValueError("bad"))) is False
    assert retry_on_transient(**call, state=_FailedState("not an exception")) is False
    assert retry_on_transient(**call, state=_FailedState(None)) is False
    # An unreadable result is no evidence of a transient fault, even an OSError.
    unreadable = _FailedState(error=ConnectionError("result storage down"))
    assert retry_on_transient(**call, state=unreadable) is False


def test_transient_mlflow_codes() -> None:
    for code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"):
        assert is_transient(MlflowException("x", error_code=getattr(databricks_pb2, code)))
    assert not is_transient(MlflowException("x", error_code=databricks_pb2.RESOURCE_DOES_NOT_EXIST))
    assert is_transient(InterfaceError("SELECT 1", {}, Exception("closed")))
    assert is_transient(httpx.ReadTimeout("slow"))
    assert is_transient(TimeoutError())
    assert is_transient(OSError("requests' ConnectionError"))


def test_io_retries_are_few_fast_and_conditional() -> None:
    assert IO_RETRIES["retries"] == len(IO_RETRIES["retry_delay_seconds"]) == 2
    worst = sum(IO_RETRIES["retry_delay_seconds"]) * (1 + IO_RETRIES["retry_jitter_factor"])
    assert worst <= 6
    assert IO_RETRIES["retry_condition_fn"] is retry_on_transient


# --- the query, against the Prefect API of the test harness ------------------------------


async def _deployment_with_runs(states: list[str]) -> tuple[str, list[Any]]:
    """A deployment (and a second one) whose runs are put in ``states`` in order."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending, Running

    async with get_client() as client:
        flow_id = await client.create_flow_from_name("guard-test")
        deployment_id = await client.create_deployment(flow_id=flow_id, name=f"d-{uuid4().hex}")
        other_id = await client.create_deployment(flow_id=flow_id, name=f"o-{uuid4().hex}")
        other = await client.create_flow_run_from_deployment(other_id)
        await client.set_flow_run_state(other.id, Pending())
        await client.set_flow_run_state(other.id, Running())
        runs = []
        for state in states:
            run = await client.create_flow_run_from_deployment(deployment_id)
            await client.set_flow_run_state(run.id, Pending())
            if state == "Running":
                await client.set_flow_run_state(run.id, Running())
            runs.append(await client.read_flow_run(run.id))
    return str(deployment_id), runs


async def _state(run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.read_flow_run(run_id)).state


def test_query_sees_earlier_running_runs_of_its_own_deployment_only() -> None:
    deployment_id, (first, second, pending) = asyncio.run(
        _deployment_with_runs(["Running", "Running", "Pending"])
    )
    assert earlier_active_runs(deployment_id, str(second.id), bound=BOUND) == RunScan(
        [first.name], []
    )
    assert earlier_active_runs(deployment_id, str(first.id), bound=BOUND) == RunScan([], [])
    # A Pending run has not started: it is not counted, and is left alone.
    assert sorted(earlier_active_runs(deployment_id, str(pending.id), bound=BOUND).active) == (
        sorted([first.name, second.name])
    )
    assert asyncio.run(_state(pending.id)).type.value == "PENDING"


def test_query_marks_stale_runs_crashed_and_stops_counting_them() -> None:
    deployment_id, (dead, own) = asyncio.run(_deployment_with_runs(["Running", "Running"]))
    later = datetime.now(UTC) + BOUND + timedelta(seconds=5)
    scan = earlier_active_runs(deployment_id, str(own.id), bound=BOUND, now=later)
    assert scan.active == [] and scan.stale_names == [dead.name]
    state = asyncio.run(_state(dead.id))
    assert state.type.value == "CRASHED"
    assert state.message == stale_message(BOUND)
    assert asyncio.run(_state(own.id)).type.value == "RUNNING"
    # Crashed is not Running: the next look finds nothing.
    assert earlier_active_runs(deployment_id, str(own.id), bound=BOUND, now=later) == RunScan(
        [], []
    )


def test_crash_marks_a_running_run_and_leaves_a_finished_one_alone() -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Completed

    _, (running, done) = asyncio.run(_deployment_with_runs(["Running", "Running"]))
    with get_client(sync_client=True) as client:
        assert crash(client, running.id, "dead") is True
    assert asyncio.run(_state(running.id)).type.value == "CRASHED"

    async def finish() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(done.id, Completed())

    asyncio.run(finish())
    with get_client(sync_client=True) as client:
        assert crash(client, done.id, "late") is False
    assert asyncio.run(_state(done.id)).type.value == "COMPLETED"


def test_submitted_at_is_when_a_worker_took_the_run() -> None:
    from prefect.client.orchestration import get_client

    _, (running, pending) = asyncio.run(_deployment_with_runs(["Running", "Pending"]))

    async def pending_times(run_id: Any) -> list[datetime]:
        async with get_client() as client:
            states = await client.read_flow_run_states(run_id)
        return [s.timestamp for s in states if s.type.value == "PENDING"]

    for run in (running, pending):
        (expected,) = asyncio.run(pending_times(run.id))
        assert submitted_at(str(run.id)) == expected

    async def scheduled_only() -> str:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name("guard-test")
            deployment_id = await client.create_deployment(flow_id=flow_id, name="never-taken")
            return str((await client.create_flow_run_from_deployment(deployment_id)).id)

    assert submitted_at(asyncio.run(scheduled_only())) is None


# --- the schedule interval: the deployment's, read through the API -----------------------


async def _deployment_with_schedule(schedule: Any | None) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    async with get_client() as client:
        flow_id = await client.create_flow_from_name("interval-test")
        schedules = [] if schedule is None else [DeploymentScheduleCreate(schedule=schedule)]
        return str(
            await client.create_deployment(
                flow_id=flow_id, name=f"s-{uuid4().hex}", schedules=schedules
            )
        )


def test_the_interval_is_the_deployments_schedule_as_the_api_holds_it() -> None:
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    every_45 = asyncio.run(
        _deployment_with_schedule(IntervalSchedule(interval=timedelta(seconds=45)))
    )
    assert deployment_interval(every_45) == timedelta(seconds=45)
    cron = asyncio.run(_deployment_with_schedule(CronSchedule(cron="* * * * *")))
    assert deployment_interval(cron) is None  # the caller falls back to the setting
    assert deployment_interval(asyncio.run(_deployment_with_schedule(None))) is None
    assert deployment_interval(None) is None  # not in a deployment
    assert interval_of(
        {"schedules": [{"schedule": {"cron": "* * * * *"}}, {"schedule": {"interval": 10.0}}]}
    ) == timedelta(seconds=10)
    assert interval_of({"schedules": [{"schedule": {"interval": 0}}]}) is None
