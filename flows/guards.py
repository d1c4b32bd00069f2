"""Pile-up guard: Prefect 2 OSS does not enforce a deployment's max active runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID


def pileup_reason(
    *,
    now: datetime,
    scheduled_start: datetime | None,
    interval: timedelta,
    earlier_active_runs: list[str],
) -> str | None:
    """Why this run should exit early, or None to proceed.

    A run skips when another run of the same deployment that started before it is still
    running, or when it starts more than one ``interval`` after its scheduled time (a
    backlog after an outage: the next scheduled run will do the work).
    """
    if earlier_active_runs:
        return f"skipped: run(s) {', '.join(earlier_active_runs)} still active"
    if scheduled_start is not None:
        late = now - scheduled_start
        if late > interval:
            return f"skipped: late by {late.total_seconds():.0f} s (> {interval.total_seconds():.0f} s)"
    return None


def earlier_active_runs(deployment_id: str | None, own_id: str) -> list[str]:
    """Names of RUNNING flow runs of ``deployment_id`` that started before this run.

    Ties (same start time) are broken by id so two simultaneous runs never both skip.
    """
    if not deployment_id:
        return []
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

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
    out = []
    for run in runs:
        if str(run.id) == own_id:
            continue
        start: Any = run.start_time
        if own_start is None or start is None or (start, str(run.id)) < (own_start, own_id):
            out.append(run.name)
    return out
