"""Production path on this machine: `prefect deploy` builds the flows image, a Docker
worker starts one container per flow run, and `continuous_training` completes inside a
container, leaving a registered model version in MLflow."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from prefect.settings import PREFECT_API_URL, temporary_settings

from devkit.deployed import docker_bootstrap_env
from tests.docker.conftest import FLOWS_IMAGE
from tests.docker.phases import (
    PHASE_TIMINGS,
    fixtures_outside_test_timeout,
    remove_containers,
    run_phase,
)
from tests.utils.deployed import pause_schedules_and_clear
from tests.utils.servers import (
    BIN,
    Stack,
    postgres,
    prefect_and_mlflow,
    spawn,
    stop,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
POOL = "it-docker-pool"
IMAGE, TAG = FLOWS_IMAGE.split(":")
DEPLOYMENT = "continuous_training/continuous-training-docker"
# Bounds (seconds) sized for a cold machine at load 10 on 2 cores. The flows image is
# built by the `flows_image` fixture (outside the test's timeout), so the bootstrap's
# `prefect deploy` build is a layer-cache hit; a flow run includes the worker's poll, a
# container start and the imports of Prefect, MLflow and scikit-learn.
BOOTSTRAP_LIMIT_S = 900
FLOW_RUN_WITHIN_S = 600
TEST_TIMEOUT_S = BOOTSTRAP_LIMIT_S + 2 * FLOW_RUN_WITHIN_S + 300
# Runs triggered here are not scheduled runs: the pile-up guard's lateness rule (skip a
# run that starts more than one interval after its scheduled time) would turn a slow
# container start on a loaded machine into a `Skipped` run. The flow-run containers get
# a long interval, as the process-pool integration test does.
NOT_LATE = {"env": {"IAC_SCHEDULE_INTERVAL_SECONDS": "3600"}}

pytestmark = [pytest.mark.docker, fixtures_outside_test_timeout(TEST_TIMEOUT_S)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    with postgres() as database_url, prefect_and_mlflow(tmp_path_factory.mktemp("dk")) as running:
        yield running, database_url


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_continuous_training_runs_inside_a_container(
    stack: tuple[Stack, str],
    base_image: str,
    flows_image: str,  # built outside the test's timeout; the deploy's build reuses it
    request: pytest.FixtureRequest,
) -> None:
    servers, database_url = stack
    env = docker_bootstrap_env(
        servers, database_url, base_image=base_image, image_name=IMAGE, image_tag=TAG
    )

    deployed = run_phase(
        "docker pool bootstrap (prefect deploy, cached image build)",
        [sys.executable, "-m", "deployments.bootstrap", "--pool", POOL, "--type", "docker"],
        stall=BOOTSTRAP_LIMIT_S,
        limit=BOOTSTRAP_LIMIT_S,
        env=env,
    )
    # The database password went to a Secret block, not into the deployment.
    assert database_url not in deployed

    api = temporary_settings(updates={PREFECT_API_URL: servers.prefect_api_url})
    api.__enter__()
    request.addfinalizer(lambda: api.__exit__(None, None, None))
    asyncio.run(pause_schedules_and_clear(DEPLOYMENT))
    asyncio.run(pause_schedules_and_clear("ingest_labels/ingest-labels-docker"))
    deployment = asyncio.run(_read_deployment(DEPLOYMENT))
    variables = deployment.job_variables
    assert variables["image"] == FLOWS_IMAGE
    assert variables["image_pull_policy"] == "Never"
    assert variables["auto_remove"] is True
    # One interpreter per container: the engine itself, not a runner that starts it.
    assert variables["command"] == "python -m prefect.engine"
    assert variables["network_mode"] == "host"
    assert variables["volumes"] == ["ia-continu-flow-state:/var/lib/ia-continu"]
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
        run = _run_to_completion("first flow run in a container", worker_log)
        # The worker ran the flow in a container ("<host>:<64-hex container id>") ...
        container_id = (run.infrastructure_pid or "").rsplit(":", 1)[-1]
        assert re.fullmatch(r"[0-9a-f]{64}", container_id), run.infrastructure_pid
        # ... which auto_remove deletes once the run's process has exited (the run is
        # `Completed` just before that, so a loaded engine may take a moment).
        wait_until(
            lambda: (
                not _docker(
                    "ps", "-a", "-q", "--filter", f"label=io.prefect.flow-run-id={run.id}"
                ).strip()
            ),
            f"auto_remove to delete the first run's container {container_id[:12]}",
            120,
            interval=2,
        )
        second = _run_to_completion("second flow run in a container", worker_log)
    finally:
        stop(worker)
        # A run the worker left behind (test failed mid-run) must not outlive the test.
        remove_containers(["label=io.prefect.flow-run-id", f"ancestor={FLOWS_IMAGE}"])
        # The pool's state volume (Discord outbox) must not carry over into other tests.
        subprocess.run(
            ["docker", "volume", "rm", "-f", "ia-continu-flow-state"],
            capture_output=True,
            timeout=120,
        )
    assert second.id != run.id

    client = MlflowClient(tracking_uri=servers.mlflow_url, registry_uri=servers.mlflow_url)
    versions = client.search_model_versions("name = 'ia-continu-classifier'")
    assert versions, "no registered model version"
    first = min(versions, key=lambda v: int(v.version))
    assert first.tags["trigger"] == "bootstrap"
    assert client.get_model_version_by_alias("ia-continu-classifier", "champion")
    for version in versions:
        # MLflow records the OS user: the image's non-root `iac`, not the host's root.
        assert client.get_run(version.run_id).data.tags["mlflow.user"] == "iac"


def _run_to_completion(phase: str, worker_log: Path) -> Any:
    """Trigger the deployment and wait for the run's final state (bounded); return the run.

    Raises:
        AssertionError: Naming ``phase``, when the run did not end ``Completed`` within
            ``FLOW_RUN_WITHIN_S`` (its last state and the worker's log in the message).
    """
    from prefect.deployments import run_deployment

    started = time.monotonic()
    run = run_deployment(DEPLOYMENT, timeout=FLOW_RUN_WITHIN_S, job_variables=NOT_LATE)
    PHASE_TIMINGS[phase] = round(time.monotonic() - started, 1)
    assert run.state is not None and run.state.name == "Completed", (
        f"{phase}: state {run.state!r} after {PHASE_TIMINGS[phase]:.0f} s "
        f"(bound {FLOW_RUN_WITHIN_S} s)",
        worker_log.read_text()[-6000:],
    )
    return run


async def _read_deployment(name: str):  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_deployment_by_name(name)
