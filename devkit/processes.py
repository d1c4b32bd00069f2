"""Start local server processes, wait for them and stop them: shared by the tests and the
benchmarks (``bench/``), which start the same servers (Prefect, MLflow, the API).

Every wait here is a poll with a bound sized for a cold, loaded 2-core machine (several
times what the phase takes on a quiet one): a slow machine makes a run slower, and only
a server that died or never answers fails it, with a message naming what was awaited.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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
