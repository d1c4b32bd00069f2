"""Deployments on a test or benchmark Prefect server with their schedules out of the way,
so that the caller decides when flow runs happen."""

from __future__ import annotations

import os

from devkit.servers import Stack


async def pause_schedules_and_clear(deployment_name: str) -> None:
    """Deactivate ``deployment_name``'s schedules and delete its scheduled flow runs.

    Uses the Prefect client of the current settings (``PREFECT_API_URL``).

    Raises:
        prefect.exceptions.ObjectNotFound: no deployment of that ``flow/deployment`` name.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(deployment_name)
        for schedule in await client.read_deployment_schedules(deployment.id):
            await client.update_deployment_schedule(deployment.id, schedule.id, active=False)
        scheduled = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]), name=None
                )
            ),
        )
        for run in scheduled:
            await client.delete_flow_run(run.id)


def docker_bootstrap_env(
    stack: Stack, database_url: str, *, base_image: str, image_name: str, image_tag: str
) -> dict[str, str]:
    """The environment of ``python -m deployments.bootstrap --type docker`` (and of the
    worker it supervises) against ``stack``: this process's environment without its
    ``IAC_*`` variables, the stack's Prefect and MLflow, the project database at
    ``database_url`` (PostgreSQL: each flow run is a new container) and the flows image
    ``prefect deploy`` builds as ``image_name:image_tag`` from ``base_image``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAC_")}
    env.update(
        PREFECT_API_URL=stack.prefect_api_url,
        PREFECT_HOME=str(stack.home / "client"),
        IAC_DATA_DIR=str(stack.home / "state"),
        IAC_DATABASE_URL=database_url,
        IAC_MLFLOW_TRACKING_URI=stack.mlflow_url,
        IAC_BASE_IMAGE=base_image,
        IAC_IMAGE_NAME=image_name,
        IAC_IMAGE_TAG=image_tag,
    )
    return env
