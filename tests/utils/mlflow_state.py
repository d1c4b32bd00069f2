"""Undo the process-wide state MLflow keeps between tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.tracking._tracking_service import utils as tracking_utils

from ia_continu.training import registry

_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")


@contextmanager
def restored_mlflow_state() -> Iterator[None]:
    """Clear the model cache on entry and exit; on exit, restore the tracking URI and the
    ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_ID`` variables seen on entry and forget
    the active experiment.

    ``registry.load_model`` caches by ``models:/name/version``: the same URI in another
    test's registry is another model. ``mlflow.set_tracking_uri`` / ``set_experiment`` set
    module globals and those variables. Use it in an autouse fixture.
    """
    registry._load_model.cache_clear()
    tracking_uri = tracking_utils._tracking_uri
    saved_env = {key: os.environ.get(key) for key in _ENV}
    try:
        yield
    finally:
        registry._load_model.cache_clear()
        mlflow.set_tracking_uri(tracking_uri)  # type: ignore[arg-type]  # None: the default
        mlflow.tracking.fluent._active_experiment_id = None
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
