"""The worker supervisor's pool sweep, against the Prefect API of the test harness:
dead and stale runs marked Crashed, the late scheduled backlog closed as Skipped."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from deployments.bootstrap import _process_gone, ensure_prefect_objects, sweep_pool

INTERVAL = timedelta(seconds=30)
BOUND = timedelta(seconds=300)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def _pool_with_runs(pool: str) -> dict[str, Any]:
    """A process pool whose scheduled deployment has a backlog, and runs in flight."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.states import Pending, Running, Scheduled

    await ensure_prefect_objects(pool, "process", f"limit-{pool}", pool_concurrency=2)
    await ensure_prefect_objects(f"other-{pool}", "process", f"limit-{pool}", 2)
    now = datetime.now(UTC)
    async with get_client() as client:
        flow_id = await client.create_flow_from_name("sweep-test")
        deployment_id = await client.create_deployment(
            flow_id=flow_id,
            name=f"d-{uuid4().hex}",
            work_pool_name=pool,
            schedules=[DeploymentScheduleCreate(schedule=IntervalSchedule(interval=INTERVAL))],
        )
        other_id = await client.create_deployment(
            flow_id=flow_id, name=f"o-{uuid4().hex}", work_pool_name=f"other-{pool}"
        )
        # The scheduler's runs over the last 5 minutes (a backfill) and the next 2.
        response = await client._client.post(
            f"/deployments/{deployment_id}/schedule",
            json={
                "start_time": (now - timedelta(minutes=5)).isoformat(),
                "end_time": (now + timedelta(minutes=2)).isoformat(),
                "max_runs": 100,
            },
        )
        response.raise_for_status()

        async def run(state: str, pid: str | None = None, deployment: Any = deployment_id) -> Any:
            flow_run = await client.create_flow_run_from_deployment(deployment)
            await client.set_flow_run_state(flow_run.id, Pending())
            if state == "Running":
                await client.set_flow_run_state(flow_run.id, Running())
            if pid:
                await client.update_flow_run(flow_run.id, infrastructure_pid=pid)
            return await client.read_flow_run(flow_run.id)

        host = socket.gethostname()
        runs = {
            "dead": await run("Running", f"{host}:{_dead_pid()}"),
            "alive": await run("Running", f"{host}:{os.getpid()}"),
            "elsewhere": await run("Running", "other-host:1"),
            "pending": await run("Pending"),
            "other_pool": await run("Running", f"{host}:{_dead_pid()}", other_id),
        }
        manual = await client.create_flow_run_from_deployment(
            deployment_id, state=Scheduled(scheduled_time=now - timedelta(minutes=4))
        )
        runs["manual"] = manual
    return runs


async def _states() -> dict[str, tuple[str, str | None, Any, bool]]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {
            str(run.id): (
                run.state.name,
                run.state.message,
                run.expected_start_time,
                run.auto_scheduled,
            )
            for run in await client.read_flow_runs(limit=200)
        }


def test_bootstrap_sets_the_pool_concurrency_limit_idempotently() -> None:
    from prefect.client.orchestration import get_client

    pool = f"limit-{uuid4().hex[:8]}"

    async def limit_after(concurrency: int) -> int | None:
        await ensure_prefect_objects(pool, "process", "limit-test", concurrency)
        async with get_client() as client:
            return (await client.read_work_pool(pool)).concurrency_limit

    assert asyncio.run(limit_after(2)) == 2
    assert asyncio.run(limit_after(2)) == 2
    assert asyncio.run(limit_after(3)) == 3


def test_process_gone_only_for_a_missing_process_of_this_host() -> None:
    host = socket.gethostname()
    assert _process_gone(f"{host}:{_dead_pid()}")
    assert not _process_gone(f"{host}:{os.getpid()}")
    assert not _process_gone("other-host:1")
    assert not _process_gone(None) and not _process_gone("")
    assert not _process_gone("unix:///var/run/docker.sock:3f2a")  # a container id


def test_sweep_crashes_dead_runs_and_skips_the_late_backlog() -> None:
    pool = f"sweep-{uuid4().hex[:8]}"
    runs = asyncio.run(_pool_with_runs(pool))
    now = datetime.now(UTC)

    result = sweep_pool(pool, interval=INTERVAL, bound=BOUND, check_pids=True, now=now)

    states = asyncio.run(_states())
    assert result["crashed"] == [runs["dead"].name]
    dead_state, dead_message, *_ = states[str(runs["dead"].id)]
    assert dead_state == "Crashed" and "is gone" in str(dead_message)
    for alive in ("alive", "elsewhere", "other_pool"):
        assert states[str(runs[alive].id)][0] == "Running", alive
    assert states[str(runs["pending"].id)][0] == "Pending"
    assert sorted(result["in_flight"]) == sorted(
        runs[name].name for name in ("alive", "elsewhere", "pending")
    )
    # The manual run waits its turn however late; auto-scheduled runs > 1 interval late
    # are closed; the rest of the schedule is untouched.
    assert states[str(runs["manual"].id)][0] == "Scheduled"
    auto = {rid: s for rid, s in states.items() if s[3]}
    late = {rid for rid, s in auto.items() if s[2] < now - INTERVAL}
    assert len(late) >= 8 and len(result["skipped"]) == len(late)
    for rid, (name, message, expected, _) in auto.items():
        if rid in late:
            assert name == "Skipped" and str(message).startswith("skipped: late by"), message
        else:
            assert name in {"Scheduled", "Late"}, (name, expected)

    # Past the stale bound, the Pending run (no process ever reported) is dead too;
    # without the pid check the other Running runs are judged by age alone.
    later = now + BOUND + timedelta(seconds=5)
    again = sweep_pool(pool, interval=INTERVAL, bound=BOUND, check_pids=False, now=later)
    assert runs["pending"].name in again["crashed"]
    assert runs["alive"].name in again["crashed"] and runs["elsewhere"].name in again["crashed"]
    assert runs["other_pool"].name not in again["crashed"]


def test_sweep_without_pid_check_waits_for_the_bound() -> None:
    pool = f"sweep-{uuid4().hex[:8]}"
    runs = asyncio.run(_pool_with_runs(pool))
    result = sweep_pool(pool, interval=INTERVAL, bound=BOUND, check_pids=False)
    assert result["crashed"] == []
    assert asyncio.run(_states())[str(runs["dead"].id)][0] == "Running"


async def _backlog(pool: str, every: timedelta) -> Any:
    """A deployment of ``pool`` scheduled every ``every``, its runs of the last 10 minutes."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule

    await ensure_prefect_objects(pool, "process", f"limit-{pool}", pool_concurrency=2)
    now = datetime.now(UTC)
    async with get_client() as client:
        flow_id = await client.create_flow_from_name("sweep-interval-test")
        deployment_id = await client.create_deployment(
            flow_id=flow_id,
            name=f"d-{uuid4().hex}",
            work_pool_name=pool,
            schedules=[DeploymentScheduleCreate(schedule=IntervalSchedule(interval=every))],
        )
        response = await client._client.post(
            f"/deployments/{deployment_id}/schedule",
            json={
                "start_time": (now - timedelta(minutes=10)).isoformat(),
                "end_time": now.isoformat(),
                "max_runs": 100,
            },
        )
        response.raise_for_status()
        return deployment_id


async def _runs_of(deployment_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async with get_client() as client:
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            limit=200,
        )


def test_the_backlog_is_judged_in_each_deployments_own_interval() -> None:
    """The deployment's schedule owns the interval (every 4 minutes here): with the setting
    at 30 s, runs 30 s to 4 minutes late are still the schedule's, not a backlog."""
    pool = f"sweep-{uuid4().hex[:8]}"
    every = timedelta(minutes=4)
    deployment_id = asyncio.run(_backlog(pool, every))
    now = datetime.now(UTC)
    result = sweep_pool(pool, interval=INTERVAL, bound=BOUND, check_pids=True, now=now)
    runs = asyncio.run(_runs_of(deployment_id))
    skipped = [r for r in runs if r.state.name == "Skipped"]
    assert skipped and sorted(result["skipped"]) == sorted(r.name for r in skipped)
    for run in runs:
        if now - run.expected_start_time > every:
            assert run.state.name == "Skipped", run.state
            assert f"(> {every.total_seconds():.0f} s)" in str(run.state.message)
        else:
            assert run.state.name in {"Scheduled", "Late"}, run.state
