"""Start real Prefect and MLflow servers on 127.0.0.1 for tests, and stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    """Poll ``url`` until 2xx; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (servers spawn children), then SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group, output to ``log``."""
    handle = log.open("wb")
    return subprocess.Popen(
        args,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env or dict(os.environ),
        start_new_session=True,
    )


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
    """A Prefect server (SQLite under ``home``) on a free port; yields its API URL."""
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


@contextmanager
def prefect_and_mlflow(home: Path) -> Iterator[Stack]:
    """Prefect server (SQLite) and MLflow server (SQLite + served artifacts) on free ports."""
    home.mkdir(parents=True, exist_ok=True)
    prefect_port, mlflow_port = free_port(), free_port()
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect")}
    env.pop("PREFECT_API_URL", None)
    procs = []
    try:
        procs.append(_spawn_prefect(home, prefect_port, env))
        procs.append(
            spawn(
                [
                    str(BIN / "mlflow"),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                    "--backend-store-uri",
                    f"sqlite:///{home / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(home / "mlartifacts"),
                    "--serve-artifacts",
                    "--workers",
                    "1",
                ],
                home / "mlflow.log",
                env,
            )
        )
        wait_healthy(f"http://127.0.0.1:{prefect_port}/api/health", procs[0], home / "prefect.log")
        wait_healthy(f"http://127.0.0.1:{mlflow_port}/health", procs[1], home / "mlflow.log")
        yield Stack(f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}", home)
    finally:
        for proc in procs:
            stop(proc)


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (a free port); yields its SQLAlchemy URL.

    Uses Debian's server binaries (``infra/scripts/ensure-test-deps.sh`` installs them).
    As root, initdb and postgres must run as the ``postgres`` user, who cannot enter
    pytest's private temp dirs: the cluster lives in its own temp dir, removed afterwards.
    """
    import glob
    import shutil
    import tempfile

    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries:
        import pytest

        pytest.skip("PostgreSQL server binaries missing: apt-get install postgresql")
    bin_dir = Path(binaries[-1])
    home = Path(tempfile.mkdtemp(prefix="iac-pg-"))
    data = home / "pgdata"
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        port = free_port()
        subprocess.run(
            [
                *pg_ctl,
                "-l",
                str(home / "postgres.log"),
                "-w",
                "start",
                "-o",
                f"-p {port} -k {home} -c listen_addresses=127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
