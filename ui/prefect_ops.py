"""What the console asks of Prefect: start flow runs of deployments, list recent runs,
pause and resume a deployment's schedule. Every call is bounded by a timeout and
failures become :class:`PrefectUnavailable` with a message fit for the page."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pendulum
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterExpectedStartTime
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

T = TypeVar("T")

# Console label -> "flow name/deployment name" as prefect.yaml defines them.
DEPLOYMENTS: dict[str, str] = {
    "continuous_training": "continuous_training/continuous-training",
    "generate": "generate/generate",
    "detect_drift": "detect_drift/detect-drift",
    "retrain": "retrain/retrain",
}
SCHEDULED = DEPLOYMENTS["continuous_training"]


def deployments_for(suffix: str) -> dict[str, str]:
    """``DEPLOYMENTS`` for one pool's set in prefect.yaml: ``'-docker'`` names the Docker
    pool's deployments (``continuous_training/continuous-training-docker``)."""
    return {label: name + suffix for label, name in DEPLOYMENTS.items()}


class PrefectUnavailable(RuntimeError):
    """Prefect did not answer in time, is down, or lacks the deployment (message says which)."""


@dataclass(frozen=True)
class StartedRun:
    """A flow run created by the console."""

    id: str
    name: str
    deployment: str


def call(make: Callable[[], Awaitable[T]], timeout: float, api_url: str | None = None) -> T:
    """Run one Prefect coroutine to completion within ``timeout`` seconds.

    Args:
        make: builds the coroutine (a Prefect client call).
        timeout: seconds.
        api_url: Prefect API to talk to; None for Prefect's own ``PREFECT_API_URL``.
            Set per call because Streamlit runs pages in threads that do not see
            Prefect settings entered elsewhere (they live in a context variable).

    Raises:
        PrefectUnavailable: timeout, connection failure, HTTP error or unknown deployment.
    """

    async def bounded() -> T:
        if api_url is None:
            return await asyncio.wait_for(make(), timeout)
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            return await asyncio.wait_for(make(), timeout)

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        raise PrefectUnavailable(f"Prefect did not answer within {timeout:g} s") from None
    except ObjectNotFound as exc:
        raise PrefectUnavailable(
            f"deployment not found ({exc}); run `prefect deploy --all` or the bootstrap"
        ) from None
    except (httpx.HTTPError, OSError) as exc:
        raise PrefectUnavailable(f"Prefect API unreachable: {type(exc).__name__}: {exc}") from None


async def start_run(deployment: str, parameters: dict[str, Any]) -> StartedRun:
    """Create a flow run of ``deployment`` (``flow/deployment``) and return at once."""
    flow_run = await run_deployment(deployment, parameters=parameters, timeout=0)
    return StartedRun(str(flow_run.id), flow_run.name, deployment)


async def recent_runs(limit: int = 50) -> list[dict[str, Any]]:
    """The newest flow runs (all deployments), newest first, as table rows; runs the
    schedule has planned for later (Prefect creates them ahead) are left out.

    Columns: ``id``, ``name``, ``deployment``, ``state``, ``started``, ``duration_s``.
    """
    due = FlowRunFilter(
        expected_start_time=FlowRunFilterExpectedStartTime(
            before_=pendulum.now("UTC").add(seconds=5)
        )
    )
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=due, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit
        )
        deployments = {d.id: d for d in await client.read_deployments()}
        flows = {f.id: f.name for f in await client.read_flows()}
    rows = []
    now = datetime.now(UTC)
    for run in runs:
        deployment = deployments.get(run.deployment_id) if run.deployment_id else None
        duration = run.total_run_time.total_seconds()
        if run.state is not None and run.state.is_running() and run.start_time is not None:
            duration = (now - run.start_time).total_seconds()
        rows.append(
            {
                "id": str(run.id),
                "name": run.name,
                "deployment": f"{flows.get(run.flow_id, '?')}/{deployment.name}"
                if deployment
                else "",
                "state": run.state.name if run.state is not None else "Unknown",
                "started": run.start_time or run.expected_start_time,
                "duration_s": round(duration, 1),
            }
        )
    return rows


async def schedule_state(deployment: str = SCHEDULED) -> tuple[bool, float | None]:
    """Whether ``deployment``'s schedule is paused, and the interval in seconds of its
    first interval schedule (None: it has none), as the Prefect API holds them."""
    async with get_client() as client:
        found = await client.read_deployment_by_name(deployment)
    intervals = [
        entry.schedule.interval.total_seconds()
        for entry in found.schedules
        if isinstance(entry.schedule, IntervalSchedule)
    ]
    return bool(found.paused), intervals[0] if intervals else None


async def schedule_paused(deployment: str = SCHEDULED) -> bool:
    """Whether ``deployment``'s schedule is paused."""
    return (await schedule_state(deployment))[0]


async def set_schedule_paused(paused: bool, deployment: str = SCHEDULED) -> None:
    """Pause (True) or resume (False) ``deployment``'s schedule."""
    async with get_client() as client:
        found = await client.read_deployment_by_name(deployment)
        await client.set_deployment_paused_state(found.id, paused)
