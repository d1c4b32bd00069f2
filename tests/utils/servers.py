"""Start real Prefect and MLflow servers on 127.0.0.1 for tests, and stop them.

The servers (:mod:`devkit.servers`) and the process helpers (free port, spawn, health
wait, stop: :mod:`devkit.processes`) are shared with the benchmarks; they are
re-exported here for the tests that import them from this module. :func:`postgres`
skips the test when PostgreSQL's server binaries are missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from devkit import servers as _servers
from devkit.processes import (
    BIN,
    HEALTH_REQUEST_TIMEOUT_S,
    SERVER_START_TIMEOUT_S,
    free_port,
    spawn,
    stop,
    wait_healthy,
    wait_until,
)
from devkit.servers import Stack, mlflow_server_args, prefect_and_mlflow, prefect_server

__all__ = [
    "BIN",
    "HEALTH_REQUEST_TIMEOUT_S",
    "SERVER_START_TIMEOUT_S",
    "Stack",
    "free_port",
    "mlflow_server_args",
    "postgres",
    "prefect_and_mlflow",
    "prefect_server",
    "spawn",
    "stop",
    "wait_healthy",
    "wait_until",
]


@contextmanager
def postgres() -> Iterator[str]:
    """:func:`devkit.servers.postgres`, skipping the test when the binaries are missing."""
    if _servers.postgres_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries missing: apt-get install postgresql")
    with _servers.postgres() as url:
        yield url
