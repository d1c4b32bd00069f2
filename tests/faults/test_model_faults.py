"""Model faults on a real MLflow server: killed mid-promotion, corrupted model artifact.

The cycle runs as the flows run it (``ia_continu.loop.cycle`` functions, in order), against a
real ``mlflow server`` (SQLite backend, served artifacts) on 127.0.0.1 and the project
database in SQLite. Each fault is injected at a chosen point of ``record_challenger``:

* killed mid-promotion: the server process group is SIGKILLed right after the
  challenger is registered (before any alias moves), or right after ``previous`` moved
  (before ``champion`` did); then restarted on the same port and stores;
* corrupted artifact: the freshly registered challenger's serialized model is
  overwritten in the server's artifact store before the load-back.

Asserted: the aliases only ever point at versions that load, the champion keeps
serving, no batch is lost or duplicated, the next cycle completes on its own, and the
operator is told (a transient error for Prefect to retry, a log line, the Discord embed).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from loguru import logger
from mlflow.tracking import MlflowClient
from sqlalchemy import text

from flows.retries import is_transient
from ia_continu.data.storage.migrate import migrate
from ia_continu.loop import cycle
from ia_continu.loop.results import DriftReport, DriftSummary, RetrainOutcome
from ia_continu.notify.events import cycle_notices as events
from ia_continu.settings import Settings
from ia_continu.training import registry
from tests.utils.servers import free_port, mlflow_server_args, spawn, stop, wait_healthy

pytestmark = [pytest.mark.faults, pytest.mark.integration]

NAME = "faults-model"


@dataclass
class MlflowServer:
    """A ``mlflow server`` that a test can kill and restart on the same port and stores."""

    home: Path
    port: int
    proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait until healthy; returns the seconds it took."""
        started = time.monotonic()
        self.proc = spawn(
            mlflow_server_args(self.port, self.home),
            self.home / f"mlflow-{int(time.time() * 1000)}.log",
        )
        log = max(self.home.glob("mlflow-*.log"), key=lambda p: p.stat().st_mtime)
        wait_healthy(f"{self.url}/health", self.proc, log)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the whole process group: no graceful shutdown, as a crash would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def artifact_dir(self, mlflow_client: MlflowClient, version: int) -> Path:
        """Where the server stores the model files of registered ``version``."""
        source = mlflow_client.get_model_version(NAME, str(version)).source
        logged = mlflow_client.get_logged_model(source.rsplit("/", 1)[-1])
        # mlflow-artifacts:/<experiment>/models/<model id>/artifacts
        return self.home / "mlartifacts" / urlparse(logged.artifact_location).path.lstrip("/")


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path / "mlflow", free_port())
    server.home.mkdir()
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            stop(server.proc)


@pytest.fixture
def fault_settings(
    tmp_path: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Concept drift every 3 batches; the window is the last batch; bounded MLflow calls."""
    for key in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    ):
        monkeypatch.setenv(key, "0")  # registered so that monkeypatch restores them
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    registry._load_model.cache_clear()
    settings = Settings(
        data_dir=tmp_path / "state",
        mlflow_tracking_uri=mlflow_server.url,
        mlflow_experiment="faults",
        registered_model_name=NAME,
        data_source="synthetic",
        synthetic_mode="concept_drift",
        synthetic_period_batches=3,
        batch_size=200,
        training_window_batches=1,
        mlflow_http_max_retries=1,
        mlflow_http_timeout_seconds=5,
    )
    migrate(settings.resolved_database_url)  # as the bootstrap does before any flow
    return settings


def run_cycle(settings: Settings, key: str) -> tuple[DriftReport, RetrainOutcome | None]:
    """One cycle as the ``continuous_training`` flow runs it: (drift report, outcome)."""
    cycle.ingest(settings, ingest_key=key)
    report = cycle.evaluate_drift(cycle.load_drift_inputs(settings), settings)
    report_id = cycle.persist_drift_report(settings, report)
    trigger = report.decision.trigger  # the policy's, as the flow passes it on
    if trigger is None:
        return report, None
    window = cycle.load_training_window(settings)
    challenger, decision = cycle.train_and_gate(window, settings)
    outcome = cycle.record_challenger(
        settings, window, challenger, decision, trigger=trigger, drift_report_id=report_id
    )
    return report, outcome


def positions(settings: Settings) -> list[int]:
    with migrate(settings.resolved_database_url).connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT position FROM batches"))]


def assert_contiguous(settings: Settings, expected: int) -> None:
    """No batch lost or duplicated: positions 0..expected-1, each once."""
    assert sorted(positions(settings)) == list(range(expected))


def assert_aliases_loadable(mlflow_client: MlflowClient) -> dict[str, int]:
    """Every alias of the model points at a version that loads and predicts."""
    found = {}
    for alias in (registry.CHAMPION, registry.PREVIOUS):
        ref = registry.get_alias(mlflow_client, NAME, alias)
        if ref is None:
            continue
        model = registry.load_fresh(mlflow_client, NAME, ref.version)
        assert hasattr(model, "predict")
        found[alias] = ref.version
    return found


def first_promotion_attempt(
    settings: Settings, start: int, until: int, armed: Callable[[], bool]
) -> tuple[int, BaseException | None, dict[str, Any] | None]:
    """Run cycles from position ``start`` until the armed fault fired (or ``until``).

    Returns:
        (position of the cycle the fault hit, the exception it raised or None, outcome).
    """
    for position in range(start, until):
        try:
            _, outcome = run_cycle(settings, f"cycle-{position}")
        except Exception as exc:
            return position, exc, None
        if not armed():
            return position, None, outcome
    raise AssertionError(f"no promotion attempted in positions {start}..{until - 1}")


@pytest.mark.parametrize("kill_at", ["after-register", "after-previous-alias"])
def test_mlflow_killed_mid_promotion(
    kill_at: str,
    fault_settings: Settings,
    mlflow_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = fault_settings
    mlflow_client = cycle.registry_client(settings)
    _, bootstrap = run_cycle(settings, "cycle-0")
    assert bootstrap is not None and bootstrap.promoted and bootstrap.version == 1

    armed = [True]
    real_register = registry.register
    real_set_alias = MlflowClient.set_registered_model_alias

    def register_then_die(*args: Any, **kwargs: Any) -> int:
        version = real_register(*args, **kwargs)
        if armed[0] and kill_at == "after-register":
            armed[0] = False
            mlflow_server.kill()
        return version

    def alias_then_die(self: MlflowClient, name: str, alias: str, version: str) -> None:
        real_set_alias(self, name, alias, version)
        if armed[0] and kill_at == "after-previous-alias" and alias == registry.PREVIOUS:
            armed[0] = False
            mlflow_server.kill()

    monkeypatch.setattr(registry, "register", register_then_die)
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", alias_then_die)

    # Positions 3-5 follow the flipped concept: a challenger trained on them is promoted.
    hit, error, _ = first_promotion_attempt(settings, 1, 6, lambda: armed[0])
    assert not armed[0], "the fault never fired"
    # The cycle fails with a transient error: Prefect retries the task, then the run
    # fails and its on-failure hook tells the operator.
    assert error is not None and is_transient(error), repr(error)

    restart_seconds = mlflow_server.start()
    back_at = time.monotonic()
    registry._load_model.cache_clear()
    # Consistent aliases: the old champion still serves; nothing points at the version
    # that was never checked (or, killed between the two moves, previous = champion).
    aliases = assert_aliases_loadable(mlflow_client)
    assert aliases[registry.CHAMPION] == 1
    assert aliases.get(registry.PREVIOUS) in (None, 1)
    orphan = int(mlflow_client.get_latest_versions(NAME)[0].version)
    assert orphan == 2
    assert registry.CHAMPION not in mlflow_client.get_model_version(NAME, "2").aliases
    # MLflow tells the truth: only the runs whose version became champion say promoted.
    experiment = mlflow_client.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment is not None
    said_promoted = mlflow_client.search_runs(
        [experiment.experiment_id], "tags.kind = 'retrain' and tags.promoted = 'true'"
    )
    assert [r.info.run_id for r in said_promoted] == [bootstrap.run_id]

    # The loop resumes by itself: the next cycle completes and promotes a checked version.
    _, outcome = run_cycle(settings, f"cycle-{hit + 1}")
    recovered_in = time.monotonic() - back_at
    assert outcome is not None and outcome.promoted, outcome
    assert outcome.version == 3 and outcome.previous_version == 1
    aliases = assert_aliases_loadable(mlflow_client)
    assert aliases == {registry.CHAMPION: 3, registry.PREVIOUS: 1}
    assert_contiguous(settings, hit + 2)
    print(
        f"\nkilled {kill_at} (position {hit}); MLflow restarted in {restart_seconds:.1f} s; "
        f"first cycle after it completed (promoting) in {recovered_in:.1f} s"
    )


def test_corrupted_model_artifact_is_not_promoted(
    fault_settings: Settings, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fault_settings
    mlflow_client = cycle.registry_client(settings)
    _, bootstrap = run_cycle(settings, "cycle-0")
    assert bootstrap is not None and bootstrap.promoted

    armed = [True]
    real_register = registry.register

    def register_then_corrupt(*args: Any, **kwargs: Any) -> int:
        version = real_register(*args, **kwargs)
        if armed[0]:
            armed[0] = False
            files = list(mlflow_server.artifact_dir(mlflow_client, version).glob("model.*"))
            assert files, "no serialized model found in the artifact store"
            for path in files:
                path.write_bytes(path.read_bytes()[:64])  # truncated mid-write
        return version

    monkeypatch.setattr(registry, "register", register_then_corrupt)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(str(m)), level="WARNING", format="{message}")
    try:
        hit, error, outcome = first_promotion_attempt(settings, 1, 6, lambda: armed[0])
    finally:
        logger.remove(sink)
    assert error is None, repr(error)
    assert outcome is not None and not outcome.promoted, outcome
    assert outcome.version == 2
    assert "cannot be loaded back" in outcome.reason, outcome.reason
    assert mlflow_client.get_model_version(NAME, "2").tags["rejected_reason"]
    assert mlflow_client.get_run(outcome.run_id).data.tags["promoted"] == "false"
    assert not mlflow_client.get_model_version(NAME, "2").aliases
    # The operator is told: a warning line and the Discord embed of the cycle.
    assert any("version 2 not promoted" in line for line in warnings), warnings
    quiet = DriftSummary(
        id="r",
        data_drift=False,
        data_drift_new=False,
        concept_drift=False,
        retrain=True,
        trigger="drift",
        reason="",
        batch_id=hit,
        champion_version=1,
        drifted_features=[],
    )
    (embed,) = events(quiet, outcome)
    assert embed.status == "warning" and "cannot be loaded back" in embed.description

    # The champion keeps serving; the next cycle promotes a sound challenger.
    assert assert_aliases_loadable(mlflow_client)[registry.CHAMPION] == 1
    _, after = run_cycle(settings, f"cycle-{hit + 1}")
    assert after is not None and after.promoted, after
    assert assert_aliases_loadable(mlflow_client) == {registry.CHAMPION: 3, registry.PREVIOUS: 1}
    assert_contiguous(settings, hit + 2)
