"""The guard measures lateness in the deployment's own interval (one owner: its schedule),
not IAC_SCHEDULE_INTERVAL_SECONDS: a real flow run of a deployment, run by Prefect's
engine as a worker's process runs it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

ROOT = Path(__file__).resolve().parents[2]


async def _late_run(interval_seconds: int, late_seconds: int) -> Any:
    """A flow run of a ``continuous_training`` deployment scheduled every
    ``interval_seconds``, handed to a worker ``late_seconds`` after its scheduled time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.states import Pending, Scheduled

    async with get_client() as client:
        flow_id = await client.create_flow_from_name("continuous_training")
        deployment_id = await client.create_deployment(
            flow_id=flow_id,
            name=f"every-{interval_seconds}-{uuid4().hex[:6]}",
            path=str(ROOT),
            entrypoint="flows/continuous_training.py:continuous_training",
            schedules=[
                DeploymentScheduleCreate(
                    schedule=IntervalSchedule(interval=timedelta(seconds=interval_seconds)),
                    active=False,
                )
            ],
        )
        due = datetime.now(UTC) - timedelta(seconds=late_seconds)
        run = await client.create_flow_run_from_deployment(
            deployment_id, state=Scheduled(scheduled_time=due)
        )
        await client.set_flow_run_state(run.id, Pending(), force=True)
        return run.id


def _run_as_a_worker_would(run_id: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What ``python -m prefect.engine`` does in the process a worker starts, with the
    environment the worker gives it (prefect.runtime reads the run's id from it)."""
    from prefect.engine import enter_flow_run_engine_from_subprocess

    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", str(run_id))
    return enter_flow_run_engine_from_subprocess(run_id)


async def _final_state(run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.read_flow_run(run_id)).state


@pytest.mark.parametrize(("interval", "skipped"), [(600, False), (20, True)])
def test_lateness_is_measured_in_the_deployments_interval(
    flow_env: Path, monkeypatch: pytest.MonkeyPatch, interval: int, skipped: bool
) -> None:
    # The setting says 5 s: a run 60 s late would be skipped if the guard used it.
    monkeypatch.setenv("IAC_SCHEDULE_INTERVAL_SECONDS", "5")
    monkeypatch.chdir(ROOT)
    run_id = asyncio.run(_late_run(interval, late_seconds=60))
    _run_as_a_worker_would(run_id, monkeypatch)
    state = asyncio.run(_final_state(run_id))
    assert state.is_completed(), state
    if skipped:
        assert state.name == "Skipped" and "late by" in str(state.message), state
    else:
        assert state.name == "Completed", state
