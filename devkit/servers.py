"""Real Prefect, MLflow and PostgreSQL servers on 127.0.0.1 (free ports), started for a
test or a benchmark and stopped at the end, even on error.

Each server keeps its state under a directory the caller gives (PostgreSQL: a temporary
directory of its own, removed afterwards), so nothing touches the user's ``.iac/``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devkit.processes import BIN, SERVER_START_TIMEOUT_S, free_port, spawn, stop, wait_healthy


@dataclass(frozen=True)
class Stack:
    """URLs and state directory of a running Prefect + MLflow pair."""

    prefect_api_url: str
    mlflow_url: str
    home: Path


def _spawn_prefect(home: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return spawn(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        home / "prefect.log",
        env,
    )


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """A Prefect server (SQLite under ``home``) on a free port; yields its API URL.

    Raises:
        RuntimeError, TimeoutError: the server exited or never answered
            (:func:`devkit.processes.wait_healthy`).
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect")}
    env.pop("PREFECT_API_URL", None)
    proc = _spawn_prefect(home, port, env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/api/health", proc, home / "prefect.log")
        yield f"http://127.0.0.1:{port}/api"
    finally:
        stop(proc)


def mlflow_server_args(port: int, home: Path) -> list[str]:
    """``mlflow server`` on 127.0.0.1:``port``: SQLite store and served artifacts in ``home``."""
    return [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "mlartifacts"),
        "--serve-artifacts",
        "--workers",
        "1",
    ]


@contextmanager
def prefect_and_mlflow(home: Path) -> Iterator[Stack]:
    """Prefect server (SQLite) and MLflow server (SQLite + served artifacts) on free ports.

    Raises:
        RuntimeError, TimeoutError: a server exited or never answered.
    """
    home.mkdir(parents=True, exist_ok=True)
    prefect_port, mlflow_port = free_port(), free_port()
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect")}
    env.pop("PREFECT_API_URL", None)
    procs = []
    try:
        procs.append(_spawn_prefect(home, prefect_port, env))
        procs.append(spawn(mlflow_server_args(mlflow_port, home), home / "mlflow.log", env))
        wait_healthy(f"http://127.0.0.1:{prefect_port}/api/health", procs[0], home / "prefect.log")
        wait_healthy(f"http://127.0.0.1:{mlflow_port}/health", procs[1], home / "mlflow.log")
        yield Stack(f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}", home)
    finally:
        for proc in procs:
            stop(proc)


def postgres_bin_dir() -> Path | None:
    """Debian's PostgreSQL server binaries (newest major version), or None if absent."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(binaries[-1]) if binaries else None


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (a free port); yields its SQLAlchemy URL.

    Uses Debian's server binaries (``infra/scripts/ensure-test-deps.sh`` installs them).
    As root, initdb and postgres must run as the ``postgres`` user, who cannot enter
    private temp dirs: the cluster lives in its own temp dir, removed afterwards.

    Raises:
        FileNotFoundError: the server binaries are missing (``apt-get install postgresql``).
        RuntimeError, TimeoutError: initdb or the server start failed or hung.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL server binaries missing: apt-get install postgresql")
    home = Path(tempfile.mkdtemp(prefix="iac-pg-"))
    data = home / "pgdata"
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    # pg_ctl -w gives up after 60 s by default: too short for a loaded machine.
    wait = ["-t", str(int(SERVER_START_TIMEOUT_S))]
    try:
        _run_bounded(
            "initdb",
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        )
        port = free_port()
        _run_bounded(
            "pg_ctl start",
            [
                *pg_ctl,
                "-l",
                str(home / "postgres.log"),
                "-w",
                *wait,
                "start",
                "-o",
                f"-p {port} -k {home} -c listen_addresses=127.0.0.1",
            ],
            log=home / "postgres.log",
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        try:
            subprocess.run(
                [*pg_ctl, "-m", "fast", "-w", "-t", "120", "stop"],
                check=False,
                capture_output=True,
                timeout=150,
            )
        except subprocess.TimeoutExpired:
            # Teardown never hangs: an unresponsive postmaster is killed.
            subprocess.run([*pg_ctl, "kill", "KILL"], check=False, capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def _run_bounded(what: str, args: list[str], log: Path | None = None) -> None:
    """Run a PostgreSQL setup command with a bound; fail naming it and showing its output."""
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=SERVER_START_TIMEOUT_S + 60
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(f"{what} did not finish within {exc.timeout:.0f} s") from None
    if done.returncode != 0:
        server_log = log.read_text()[-3000:] if log and log.exists() else ""
        raise RuntimeError(
            f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            f"{server_log}"
        )
