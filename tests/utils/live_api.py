"""Serve the API for tests on 127.0.0.1: an ASGI app in a background thread, or the real
``python -m api`` (uvicorn with uvloop and httptools, as deployed) as a process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from tests.utils.servers import free_port, spawn, stop, wait_healthy


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, timeout: float = 60) -> Iterator[str]:
    """Run ``app`` (lifespan included) until the block exits; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@dataclass(frozen=True)
class ApiProcess:
    """A running ``python -m api``: its URL, process and log file."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        """Everything the API logged so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def api_process(env: dict[str, str], log: Path) -> Iterator[ApiProcess]:
    """Start ``python -m api`` with ``env`` on top of this process's environment (its
    ``IAC_*`` variables removed) on a free port; yields once ``/health`` answers, stops
    the process (SIGTERM, then SIGKILL) when the block exits.

    Raises:
        RuntimeError / TimeoutError: the API exited or never answered (log tail included).
    """
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("IAC_")}
    full.update(env)
    full.update(IAC_API_HOST="127.0.0.1", IAC_API_PORT=str(port))
    proc = spawn([sys.executable, "-m", "api"], log, full)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/health", proc, log)
        yield ApiProcess(url, proc, log)
    finally:
        stop(proc)
