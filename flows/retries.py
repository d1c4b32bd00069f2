"""Retry policy for I/O tasks: a few quick retries, only for transient failures."""

from __future__ import annotations

from typing import Any

import httpx
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import InterfaceError, OperationalError

TRANSIENT_MLFLOW_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def is_transient(exc: BaseException | None) -> bool:
    """True for errors a retry can fix: network, database connection, MLflow 5xx."""
    if isinstance(exc, httpx.HTTPError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code in TRANSIENT_MLFLOW_CODES
    # requests (used by MLflow's client) raises its own ConnectionError subclasses of OSError.
    return isinstance(exc, OSError)


def retry_on_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` for Prefect tasks: retry only transient I/O failures."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as error:  # the result itself may be unreadable
        exc = error
    return is_transient(exc if isinstance(exc, BaseException) else None)


# Total worst case ~6 s, well inside the 30 s schedule.
IO_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [1, 3],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
}
