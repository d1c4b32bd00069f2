"""Start real Prefect and MLflow servers on 127.0.0.1 for tests, and stop them.

Every wait here is a poll with a bound sized for a cold, loaded 2-core machine (several
times what the phase takes on a quiet one): a slow machine makes a test slower, and only
a server that died or never answers fails it, with a message naming what was awaited.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

BIN = Path(sys.executable).parent
T = TypeVar("T")
# A server that is up answers its health URL within this, even on a loaded machine.
HEALTH_REQUEST_TIMEOUT_S = 10.0
# A server start: ~5-20 s on a quiet machine, minutes at load 10+ on 2 cores.
SERVER_START_TIMEOUT_S = 300.0


def wait_until(
    check: Callable[[], T | None],
    what: str,
    timeout: float,
    *,
    interval: float = 1.0,
    describe: Callable[[], str] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``check`` every ``interval`` s until it returns a truthy value; return it.

    Args:
        check: Returns the awaited value, or a falsy value while not there yet.
        what: What is awaited, for the error ("the API's /ready answering 200").
        timeout: Bound in seconds; size it for a loaded machine, not for a quiet one.
        interval: Seconds between polls.
        describe: Called once on timeout; its text (current states, a log tail) goes
            into the error.
        ignore: Exceptions of ``check`` that mean "not yet" (e.g. ``httpx.HTTPError``).

    Raises:
        TimeoutError: "waited N s for <what>" plus ``describe()``'s text and the last
            ignored exception, when ``check`` never returned a truthy value in time.
    """
    started = time.monotonic()
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
        except ignore as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() - started >= timeout:
            break
        time.sleep(interval)
    detail = describe() if describe else ""
    if last_error is not None:
        detail = f"last error: {type(last_error).__name__}: {last_error}\n{detail}"
    raise TimeoutError(f"waited {timeout:.0f} s for {what}\n{detail}".rstrip())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout: float = SERVER_START_TIMEOUT_S,
) -> None:
    """Poll ``url`` until it answers 2xx.

    Raises:
        RuntimeError: The server process exited (its log tail in the message).
        TimeoutError: ``url`` did not answer 2xx within ``timeout`` s (log tail included).
    """

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        return httpx.get(url, timeout=HEALTH_REQUEST_TIMEOUT_S).is_success

    wait_until(
        healthy,
        f"{url} to answer 2xx",
        timeout,
        interval=0.5,
        describe=lambda: f"server log:\n{log.read_text()[-3000:]}",
        ignore=(httpx.HTTPError,),
    )


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
                mlflow_server_args(mlflow_port, home),
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
