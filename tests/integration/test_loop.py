"""The whole loop for real: Prefect server, MLflow server, prefect.yaml deployments, a
process worker, flow runs triggered through the API, and a fake Discord on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.utils.deployed import bootstrap_paused, loop_env
from tests.utils.fake_discord import FakeDiscord
from tests.utils.servers import BIN, Stack, prefect_and_mlflow, spawn, stop

# The module's servers and bootstrap start under their own bounds (wait_healthy, the
# bootstrap's 300 s), outside the per-test budget: a slow machine slows them, never fails them.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900, func_only=True)]

ROOT = Path(__file__).resolve().parents[2]
POOL = "it-process-pool"
MODEL = "it-classifier"
CYCLES = 6


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with prefect_and_mlflow(tmp_path_factory.mktemp("stack")) as running:
        yield running


def _env(stack: Stack, webhook: str) -> dict[str, str]:
    return loop_env(
        stack,
        webhook,
        MODEL,
        IAC_DATA_SOURCE="synthetic",
        IAC_SYNTHETIC_MODE="concept_drift",
        IAC_BATCH_SIZE="300",
        IAC_SYNTHETIC_PERIOD_BATCHES="3",
        IAC_TRAINING_WINDOW_BATCHES="2",
    )


def test_deployed_loop_detects_drift_promotes_and_notifies(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    with FakeDiscord() as discord:
        env = _env(stack, discord.url)
        for key, value in env.items():
            if key.startswith(("IAC_", "PREFECT_")):
                monkeypatch.setenv(key, value)

        bootstrap_paused(env, POOL, stack.prefect_api_url, request)
        worker = spawn(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
            stack.home / "worker.log",
            env,
        )
        try:
            from prefect.deployments import run_deployment

            runs: list[Any] = []
            for _ in range(CYCLES):
                run = run_deployment("continuous_training/continuous-training", timeout=240)
                assert run.state is not None
                assert run.state.is_completed() and run.state.name == "Completed", (
                    run.state,
                    (stack.home / "worker.log").read_text()[-4000:],
                )
                runs.append(run)
        finally:
            stop(worker)

        client = MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
        champion = client.get_model_version_by_alias(MODEL, "champion")
        previous = client.get_model_version_by_alias(MODEL, "previous")
        # Bootstrap made version 1; the concept flip at position 3 promoted a challenger.
        assert int(champion.version) >= 2
        assert int(previous.version) < int(champion.version)
        assert champion.tags["trigger"] == "drift"
        assert champion.tags["drift_report_id"]
        experiment = client.get_experiment_by_name("ia-continu")
        assert experiment is not None
        drift_runs = client.search_runs(
            [experiment.experiment_id], "tags.kind = 'drift_report'", max_results=100
        )
        assert len(drift_runs) == CYCLES
        concept = [r for r in drift_runs if r.data.metrics.get("concept_drift") == 1.0]
        assert concept, "no drift report flagged concept drift"

        colours = [p["embeds"][0]["color"] for p in discord.received]
        titles = [p["embeds"][0]["title"] for p in discord.received]
        assert 0x9B59B6 in colours, titles  # drift
        assert 0x2ECC71 in colours, titles  # promotion
        assert any("promoted to champion" in t for t in titles)
