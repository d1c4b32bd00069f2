"""The project deployed for real on a test Prefect server, its schedules out of the way:
the integration and Docker tests trigger flow runs themselves."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from devkit.deployed import pause_schedules_and_clear
from tests.utils.servers import Stack

ROOT = Path(__file__).resolve().parents[2]
#: The process-pool deployments that carry a schedule.
SCHEDULED = ("continuous_training/continuous-training", "ingest_labels/ingest-labels")


def loop_env(stack: Stack, webhook: str, model: str, **settings: str) -> dict[str, str]:
    """This process's environment without its ``IAC_*`` variables, pointed at ``stack``:
    state under ``stack.home/state``, registered model ``model``, Discord at ``webhook``,
    a 600 s schedule interval (triggered runs are never late), then ``settings``
    (``IAC_*`` names) on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAC_")}
    env.update(
        PREFECT_API_URL=stack.prefect_api_url,
        PREFECT_HOME=str(stack.home / "client"),
        IAC_DATA_DIR=str(stack.home / "state"),
        IAC_MLFLOW_TRACKING_URI=stack.mlflow_url,
        IAC_REGISTERED_MODEL_NAME=model,
        IAC_DISCORD_WEBHOOK_URL=webhook,
        IAC_SCHEDULE_INTERVAL_SECONDS="600",
    )
    env.update(settings)
    return env


def bootstrap_paused(
    env: dict[str, str],
    pool: str,
    prefect_api_url: str,
    request: pytest.FixtureRequest,
    scheduled: tuple[str, ...] = SCHEDULED,
) -> None:
    """The README path (``python -m deployments.bootstrap --pool POOL``: pool, concurrency
    limit, Secret blocks, ``prefect deploy``), then this process's Prefect client pointed
    at ``prefect_api_url`` until the test ends and the ``scheduled`` deployments paused.

    Raises:
        subprocess.CalledProcessError: the bootstrap failed.
    """
    subprocess.run(
        [sys.executable, "-m", "deployments.bootstrap", "--pool", pool],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    api = temporary_settings(updates={PREFECT_API_URL: prefect_api_url})
    api.__enter__()
    request.addfinalizer(lambda: api.__exit__(None, None, None))
    for name in scheduled:
        asyncio.run(pause_schedules_and_clear(name))
