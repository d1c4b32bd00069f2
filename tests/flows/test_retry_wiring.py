"""The I/O retry policy wired into Prefect: a real flow run on a real Prefect server, the
task runs read back from its API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prefect import flow, task
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.retries import IO_RETRIES
from tests.utils.servers import prefect_server

pytestmark = pytest.mark.integration

CALLS: dict[str, int] = {}


@task(name="flaky-io", **IO_RETRIES)
def flaky_io(error: str) -> str:
    """Fails with ``error`` on its first call only."""
    CALLS[error] = CALLS.get(error, 0) + 1
    if CALLS[error] == 1:
        raise {"connection": ConnectionError, "logic": ValueError}[error]("first call fails")
    return "ok"


@flow(name="retry-wiring")
def retry_wiring(error: str) -> Any:
    return flaky_io(error, return_state=True)


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with (
        prefect_server(tmp_path_factory.mktemp("prefect")) as url,
        temporary_settings(updates={PREFECT_API_URL: url}),
    ):
        yield url


async def _task_run_history(flow_run_id: Any) -> tuple[int, str, list[str]]:
    """run_count, final state name and state-name history of the flow run's one task run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        (task_run,) = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        states = await client.read_task_run_states(task_run.id)
    return task_run.run_count, task_run.state.name, [s.name for s in states]


def test_a_transient_error_is_retried_by_prefect(prefect_api: str) -> None:
    state = retry_wiring("connection", return_state=True)
    assert state.is_completed(), state
    flow_run_id = state.state_details.flow_run_id
    # The run is on the real server, not in an in-process test harness.
    assert httpx.get(f"{prefect_api}/flow_runs/{flow_run_id}").json()["name"]
    run_count, final, history = asyncio.run(_task_run_history(flow_run_id))
    assert CALLS["connection"] == 2
    assert run_count == 2 and final == "Completed"
    assert "AwaitingRetry" in history and "Retrying" in history, history


def test_a_logic_error_is_not_retried(prefect_api: str) -> None:
    state = retry_wiring("logic", return_state=True)
    assert state.is_failed(), state
    run_count, final, history = asyncio.run(_task_run_history(state.state_details.flow_run_id))
    assert CALLS["logic"] == 1
    assert run_count == 1 and final == "Failed"
    assert "AwaitingRetry" not in history, history
