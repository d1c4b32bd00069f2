"""MLflow tracking and model registry: champion / previous aliases, lineage, promotion.

Aliases, not stages (stages are deprecated since MLflow 2.9): ``champion`` is what
serves, ``previous`` is the champion it replaced, for rollback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

CHAMPION = "champion"
PREVIOUS = "previous"


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and the lineage stored in its tags."""

    name: str
    version: int
    run_id: str | None
    validation_accuracy: float | None
    training_batch_ids: list[int] = field(default_factory=list)
    source: str | None = None

    @property
    def uri(self) -> str:
        """Pinned URI (``models:/name/version``): never moves under the reader."""
        return f"models:/{self.name}/{self.version}"


def client(tracking_uri: str) -> MlflowClient:
    """A client bound to ``tracking_uri`` (also made the process default for fluent calls).

    MLflow's usage telemetry is off unless ``MLFLOW_DISABLE_TELEMETRY`` says otherwise.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """Id of experiment ``name``, created if missing (safe when two processes race)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(mlflow_client.create_experiment(name))
    except MlflowException:
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def get_alias(mlflow_client: MlflowClient, name: str, alias: str = CHAMPION) -> ModelRef | None:
    """The version behind ``alias`` of registered model ``name``, or None if unset.

    Raises:
        mlflow.exceptions.MlflowException: the server fails for another reason.
    """
    try:
        version = mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    tags = version.tags or {}
    accuracy = tags.get("validation_accuracy")
    batch_ids = tags.get("training_batch_ids", "")
    return ModelRef(
        name=name,
        version=int(version.version),
        run_id=version.run_id,
        validation_accuracy=float(accuracy) if accuracy else None,
        training_batch_ids=[int(b) for b in batch_ids.split(",") if b],
        source=tags.get("source"),
    )


def load_model(uri: str, tracking_uri: str) -> Any:
    """Load a scikit-learn model from a pinned ``models:/name/version`` URI.

    Cached per (tracking URI, model URI): a registered version never changes.
    """
    return _load_model(uri, tracking_uri)


@lru_cache(maxsize=4)
def _load_model(uri: str, tracking_uri: str) -> Any:
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.sklearn.load_model(uri)


def log_challenger(
    mlflow_client: MlflowClient,
    *,
    experiment: str,
    model: Any,
    input_example: pd.DataFrame,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    lineage: dict[str, Any],
) -> tuple[str, str]:
    """Log a trained challenger as an MLflow run: params, metrics, model with signature.

    Returns:
        ``(run_id, model_uri)``; the model is not registered yet.
    """
    experiment_id(mlflow_client, experiment)
    mlflow.set_experiment(experiment)
    signature = infer_signature(input_example, model.predict(input_example))
    with mlflow.start_run(run_name=f"retrain-{tags.get('trigger', 'manual')}", tags=tags) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(lineage, "lineage.json")
        # Explicit requirements: MLflow's inference spawns a subprocess (~10 s a model).
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=input_example,
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
        )
    return run.info.run_id, info.model_uri


def register(
    mlflow_client: MlflowClient, *, name: str, model_uri: str, tags: dict[str, str]
) -> int:
    """Register ``model_uri`` (as returned by :func:`log_challenger`) as a new version.

    ``mlflow.register_model`` creates the registered model if needed and links the
    MLflow 3 logged model (``models:/m-…``) to the version.
    """
    mlflow.set_tracking_uri(mlflow_client.tracking_uri)
    version = mlflow.register_model(model_uri, name, tags=tags)
    return int(version.version)


def promote(mlflow_client: MlflowClient, name: str, version: int) -> int | None:
    """Point ``champion`` at ``version`` and ``previous`` at the old champion.

    ``previous`` is moved first, so a failure between the two calls leaves the old
    champion serving.

    Returns:
        The old champion version, or None if there was none.
    """
    old = get_alias(mlflow_client, name, CHAMPION)
    if old is not None and old.version != version:
        mlflow_client.set_registered_model_alias(name, PREVIOUS, str(old.version))
    mlflow_client.set_registered_model_alias(name, CHAMPION, str(version))
    return old.version if old is not None else None


def rollback(mlflow_client: MlflowClient, name: str) -> int:
    """Swap ``champion`` and ``previous``; returns the new champion version.

    Raises:
        LookupError: no ``previous`` version to roll back to.
    """
    previous = get_alias(mlflow_client, name, PREVIOUS)
    if previous is None:
        raise LookupError(f"registered model {name!r} has no {PREVIOUS!r} alias")
    promote(mlflow_client, name, previous.version)
    return previous.version


def log_drift_run(
    *, experiment: str, report: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]
) -> str:
    """Log one drift report as an MLflow run (metrics per feature + ``drift_report.json``)."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"drift-batch-{tags.get('batch_id', '?')}", tags=tags) as run:
        mlflow.log_metrics(metrics)
        mlflow.log_text(json.dumps(report, indent=2, default=str), "drift_report.json")
    return str(run.info.run_id)
