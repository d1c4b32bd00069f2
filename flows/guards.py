"""Pile-up guard: Prefect 2 OSS does not enforce a deployment's max active runs.

Prefect 2.20 has no flow-run heartbeat either: a run whose process was killed (the
worker's host rebooted, the worker and its children were SIGKILLed) stays ``Running``
(or ``Pending``) for ever. Such a run is recognised by its age: one that entered its
state more than a bound ago (``IAC_STALE_RUN_SECONDS``, default 10 schedule intervals,
far above a healthy cycle's 5-40 s) is *stale*. Stale runs are marked ``Crashed``
through the API, so the UI shows them and they stop holding work-pool slots, and they
no longer count as active.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

STALE_INTERVALS = 10
"""Default stale bound, in schedule intervals, when ``IAC_STALE_RUN_SECONDS`` is unset."""


class RunRef(NamedTuple):
    """A flow run seen by the guard: id, name, and when it entered its current state."""

    id: str
    name: str
    since: datetime | None


class RunScan(NamedTuple):
    """Earlier runs of a deployment: names of the live ones, and the stale ones."""

    active: list[str]
    stale: list[RunRef]

    @property
    def stale_names(self) -> list[str]:
        """Names of the stale runs, for messages."""
        return [run.name for run in self.stale]


def stale_bound(interval: timedelta, configured_seconds: int | None = None) -> timedelta:
    """How long a run may stay ``Running``/``Pending`` before it is presumed dead.

    ``configured_seconds`` (``IAC_STALE_RUN_SECONDS``) wins; otherwise
    ``STALE_INTERVALS`` schedule intervals.
    """
    if configured_seconds is not None:
        return timedelta(seconds=configured_seconds)
    return interval * STALE_INTERVALS


def is_stale(since: datetime | None, now: datetime, bound: timedelta) -> bool:
    """True when a run that entered its state at ``since`` has been there over ``bound``.

    A run with no timestamp is never stale (nothing says it is old).
    """
    return since is not None and now - since > bound


def split_runs(
    runs: Iterable[RunRef],
    *,
    own_id: str,
    own_start: datetime | None,
    now: datetime,
    bound: timedelta,
) -> RunScan:
    """Sort the deployment's ``Running`` runs into earlier live ones and stale ones.

    A live run counts when it started before this run (``own_id`` started at
    ``own_start``); ties on the start time are broken by id, so of two simultaneous
    runs exactly one proceeds. This run itself is ignored. A stale run counts as stale
    whatever its start time.
    """
    active: list[str] = []
    stale: list[RunRef] = []
    for run in runs:
        if run.id == own_id:
            continue
        if is_stale(run.since, now, bound):
            stale.append(run)
        elif own_start is None or run.since is None or (run.since, run.id) < (own_start, own_id):
            active.append(run.name)
    return RunScan(active, stale)


def pileup_reason(
    *,
    now: datetime,
    scheduled_start: datetime | None,
    interval: timedelta,
    earlier_active_runs: list[str],
    stale_runs: list[str] | None = None,
) -> str | None:
    """Why this run should exit early, or None to proceed.

    A run skips when another run of the same deployment that started before it is still
    running, or when it was taken by a worker (``now``: that time, or the current time)
    more than one ``interval`` after its scheduled time (a backlog after an outage: the
    next scheduled run will do the work). Stale runs
    (``stale_runs``, already marked ``Crashed``) never block; a skip reason names them.
    """
    note = stale_note(stale_runs or [])
    suffix = f"; {note}" if note else ""
    if earlier_active_runs:
        return f"skipped: run(s) {', '.join(earlier_active_runs)} still active{suffix}"
    if scheduled_start is not None:
        late = now - scheduled_start
        if late > interval:
            return (
                f"skipped: late by {late.total_seconds():.0f} s"
                f" (> {interval.total_seconds():.0f} s){suffix}"
            )
    return None


def stale_note(stale_runs: list[str]) -> str | None:
    """The operator-facing sentence about stale runs, or None when there are none."""
    if not stale_runs:
        return None
    return f"stale run(s) {', '.join(stale_runs)} presumed dead and marked Crashed"


def stale_message(bound: timedelta) -> str:
    """The state message of a run marked ``Crashed`` by the guard."""
    return (
        f"no end after more than {bound.total_seconds():.0f} s: its process is presumed"
        " dead (IAC_STALE_RUN_SECONDS); marked Crashed by the pile-up guard"
    )


def crash(client: Any, run_id: UUID, message: str) -> bool:
    """Propose ``Crashed`` for a run through ``client`` (a sync Prefect client).

    Not forced: a run that finished meanwhile keeps its terminal state. Returns True when
    the server accepted the transition.
    """
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    result = client.set_flow_run_state(run_id, Crashed(message=message))
    return result.state is not None and result.state.type == StateType.CRASHED


def interval_of(deployment: dict[str, Any]) -> timedelta | None:
    """The interval of the first interval schedule of ``deployment`` (the JSON of
    ``GET /deployments/{id}``: ``schedules[].schedule.interval`` in seconds), None when it
    has none (a cron or RRule schedule, or no schedule: the caller falls back to
    ``IAC_SCHEDULE_INTERVAL_SECONDS``)."""
    for entry in deployment.get("schedules") or []:
        seconds = (entry.get("schedule") or {}).get("interval")
        if isinstance(seconds, int | float) and seconds > 0:
            return timedelta(seconds=seconds)
    return None


def deployment_interval(deployment_id: str | None) -> timedelta | None:
    """The schedule interval of ``deployment_id`` as the Prefect API holds it
    (``prefect.yaml``'s ``interval``, or what an operator changed it to in the UI), None
    outside a deployment or without an interval schedule.

    The deployment's schedule is the one owner of the interval: the guard measures
    lateness and staleness in it, so a schedule changed in the UI needs no setting.

    Raises:
        httpx.HTTPError: API unreachable or refusing.
    """
    if not deployment_id:
        return None
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return read_interval(client, deployment_id)


def read_interval(client: Any, deployment_id: object) -> timedelta | None:
    """:func:`interval_of` the deployment ``deployment_id`` as ``client`` (a sync Prefect
    client, open) reads it: 2.20's ``SyncPrefectClient`` has no ``read_deployment``.

    Raises:
        httpx.HTTPError: API unreachable or refusing.
    """
    response = client._client.get(f"/deployments/{deployment_id}")
    response.raise_for_status()
    return interval_of(response.json())


def submitted_at(run_id: str) -> datetime | None:
    """When the run last entered ``Pending`` (a worker took it), or None if it never did.

    The lateness rule measures this, not the time the guard runs: on a loaded machine a
    flow process can take a minute to import its stack, and a run handed over on time
    must not count as backlog for that.

    Raises:
        httpx.HTTPError: API unreachable or refusing.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client._client.get("/flow_run_states/", params={"flow_run_id": run_id})
        response.raise_for_status()
    times = [
        datetime.fromisoformat(state["timestamp"])
        for state in response.json()
        if state["type"] == "PENDING"
    ]
    return max(times, default=None)


def earlier_active_runs(
    deployment_id: str | None,
    own_id: str,
    *,
    bound: timedelta,
    now: datetime | None = None,
) -> RunScan:
    """``Running`` flow runs of ``deployment_id`` other than ``own_id``, split by
    :func:`split_runs` at ``now`` (default: the current UTC time).

    Stale runs are marked ``Crashed`` through the API as a side effect.

    Raises:
        httpx.HTTPError, prefect.exceptions.PrefectHTTPStatusError: API unreachable or
        refusing (the caller decides whether to proceed).
    """
    if not deployment_id:
        return RunScan([], [])
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    now = now or datetime.now(UTC)
    with get_client(sync_client=True) as client:
        own_start = client.read_flow_run(UUID(own_id)).start_time
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(deployment_id)])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.RUNNING]), name=None
                )
            ),
        )
        scan = split_runs(
            (RunRef(str(run.id), run.name, run.start_time) for run in runs),
            own_id=own_id,
            own_start=own_start,
            now=now,
            bound=bound,
        )
        message = stale_message(bound)
        for run in scan.stale:
            crash(client, UUID(run.id), message)
    return scan
