"""Retry policy for I/O tasks: a few quick retries, only for transient failures."""

from __future__ import annotations

import sys
from typing import Any

import httpx
from sqlalchemy.exc import InterfaceError, OperationalError

TRANSIENT_MLFLOW_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def is_transient(exc: BaseException | None) -> bool:
    """True for errors a retry can fix: network, database connection, MLflow 5xx."""
    if isinstance(exc, httpx.HTTPError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    # MLflow costs about a second to import and a cycle without a retrain may not need it
    # before its first failure: an MlflowException can only exist once its module is loaded.
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    if mlflow_exceptions is not None and isinstance(exc, mlflow_exceptions.MlflowException):
        return exc.error_code in TRANSIENT_MLFLOW_CODES
    # requests (used by MLflow's client) raises its own ConnectionError subclasses of OSError.
    return isinstance(exc, OSError)


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` for Prefect tasks: retry only transient I/O failures.

    Prefect 2.20 calls it *by keyword* (``task=``, ``task_run=``, ``state=``; the names
    are part of the contract) from a worker thread when a task run fails, with the
    ``Failed`` state whose ``result(raise_on_failure=False)`` returns the task's
    exception. Returns True to let Prefect retry. Never raises: Prefect logs an error
    from here and reads it as "don't retry", so an unreadable result means no retry.
    """
    del task, task_run  # the decision depends on the exception alone
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the result itself is unreadable: no evidence of a transient fault
        return False
    return isinstance(exc, BaseException) and is_transient(exc)


# Total worst case ~6 s, well inside the 30 s schedule.
IO_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [1, 3],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
}
