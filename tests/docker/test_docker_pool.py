"""Production path on this machine: `prefect deploy` builds the flows image, a Docker
worker starts one container per flow run, and `continuous_training` completes inside a
container, leaving a registered model version in MLflow."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.integration.test_loop import _pause_schedules_and_clear
from tests.utils.servers import BIN, Stack, postgres, prefect_and_mlflow, spawn, stop

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
POOL = "it-docker-pool"
IMAGE = "ia-continu-flows-test"
DEPLOYMENT = "continuous_training/continuous-training-docker"
TIMINGS = ROOT / "test-artifacts" / "docker-pool-timings.json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    with postgres() as database_url, prefect_and_mlflow(tmp_path_factory.mktemp("dk")) as running:
        yield running, database_url


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_continuous_training_runs_inside_a_container(
    stack: tuple[Stack, str], base_image: str, request: pytest.FixtureRequest
) -> None:
    servers, database_url = stack
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAC_")}
    env.update(
        PREFECT_API_URL=servers.prefect_api_url,
        PREFECT_HOME=str(servers.home / "client"),
        IAC_DATA_DIR=str(servers.home / "state"),
        IAC_DATABASE_URL=database_url,
        IAC_MLFLOW_TRACKING_URI=servers.mlflow_url,
        IAC_BASE_IMAGE=base_image,
        IAC_IMAGE_NAME=IMAGE,
        IAC_IMAGE_TAG="test",
    )
    timings: dict[str, float] = {}

    started = time.monotonic()
    deployed = subprocess.run(
        [sys.executable, "-m", "deployments.bootstrap", "--pool", POOL, "--type", "docker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    timings["bootstrap_with_image_build_s"] = round(time.monotonic() - started, 1)
    assert deployed.returncode == 0, deployed.stdout[-4000:] + deployed.stderr[-4000:]
    # The database password went to a Secret block, not into the deployment.
    assert database_url not in deployed.stdout + deployed.stderr

    api = temporary_settings(updates={PREFECT_API_URL: servers.prefect_api_url})
    api.__enter__()
    request.addfinalizer(lambda: api.__exit__(None, None, None))
    asyncio.run(_pause_schedules_and_clear(DEPLOYMENT))
    deployment = asyncio.run(_read_deployment(DEPLOYMENT))
    variables = deployment.job_variables
    assert variables["image"] == f"{IMAGE}:test"
    assert variables["image_pull_policy"] == "Never"
    assert variables["auto_remove"] is True
    assert variables["network_mode"] == "host"
    assert variables["env"]["IAC_DATABASE_URL"] == (
        "{{ prefect.blocks.secret.ia-continu-database-url }}"
    )
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/ia-continu"}}
    ]

    worker_log = servers.home / "docker-worker.log"
    worker = spawn(
        [
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            POOL,
            "--type",
            "docker",
            "--install-policy",
            "never",
        ],
        worker_log,
        env,
    )
    try:
        from prefect.deployments import run_deployment

        started = time.monotonic()
        run = run_deployment(DEPLOYMENT, timeout=600)
        timings["first_flow_run_s"] = round(time.monotonic() - started, 1)
        assert run.state is not None and run.state.name == "Completed", (
            run.state,
            worker_log.read_text()[-6000:],
        )
        started = time.monotonic()
        second = run_deployment(DEPLOYMENT, timeout=600)
        timings["second_flow_run_s"] = round(time.monotonic() - started, 1)
        assert second.state is not None and second.state.name == "Completed", second.state
    finally:
        stop(worker)
    TIMINGS.parent.mkdir(exist_ok=True)
    TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")

    # The worker ran the flow in a container ("<host>:<64-hex container id>") ...
    container_id = (run.infrastructure_pid or "").rsplit(":", 1)[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", container_id), run.infrastructure_pid
    # ... which auto_remove deleted once the run finished.
    leftover = _docker("ps", "-a", "-q", "--filter", f"label=io.prefect.flow-run-id={run.id}")
    assert leftover.strip() == ""

    client = MlflowClient(tracking_uri=servers.mlflow_url, registry_uri=servers.mlflow_url)
    versions = client.search_model_versions("name = 'ia-continu-classifier'")
    assert versions, "no registered model version"
    first = min(versions, key=lambda v: int(v.version))
    assert first.tags["trigger"] == "bootstrap"
    assert client.get_model_version_by_alias("ia-continu-classifier", "champion")
    for version in versions:
        # MLflow records the OS user: the image's non-root `iac`, not the host's root.
        assert client.get_run(version.run_id).data.tags["mlflow.user"] == "iac"


async def _read_deployment(name: str):  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_deployment_by_name(name)
