"""MLflow tracking and model registry: champion / previous aliases, lineage, promotion.

Aliases, not stages (stages are deprecated since MLflow 2.9): ``champion`` is what
serves, ``previous`` is the champion it replaced, for rollback.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from ia_continu.monitoring.estimation import Calibrator

# MLflow (about a second to import) and scikit-learn (through ``mlflow.sklearn`` and the
# calibrator) are imported by the functions that use them: a flow process imports this
# module with its flow, long before (and often without) talking to the registry.

CHAMPION = "champion"
PREVIOUS = "previous"
CALIBRATION_ARTIFACT = "calibration.json"
# MLflow 3 saves scikit-learn models with skops, which refuses the node arrays of tree
# models unless their types are trusted explicitly: our own estimators' trees are.
SKOPS_TRUSTED_TYPES = [
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


@dataclass(frozen=True)
class Lineage:
    """What a registered version learnt from and why it exists: the one owner of the
    version tags that carry it, written by :func:`Lineage.to_tags` when the cycle
    registers a challenger and read back by :func:`Lineage.from_tags` (the champion's
    reference in :func:`get_alias`, the console's model page).

    Tag names and formats are those of versions registered since the project began;
    unknown values are stored as empty tags and read back as None.

    Attributes:
        validation_accuracy: accuracy on the held-out rows at training time (0..1), tag
            ``validation_accuracy`` with 6 decimals; the concept-drift reference.
        validation_rows: held-out rows behind it (tag ``validation_rows``).
        window: training window chosen (``last_8``, ``since_change``, ``bootstrap``…).
        training_batch_ids: batch ids trained on, oldest first (tag ``training_batch_ids``,
            comma-separated).
        holdout_batch_id: the batch held out for the gate (tag ``holdout_batch_id``).
        source: stream identity (``BatchSource.name``).
        trigger: why the retrain ran (``drift``, ``scheduled``, ``manual``, ``bootstrap``…).
        drift_report_id: the drift report that triggered it, if any.
    """

    validation_accuracy: float | None = None
    validation_rows: int | None = None
    window: str | None = None
    training_batch_ids: tuple[int, ...] = ()
    holdout_batch_id: int | None = None
    source: str | None = None
    trigger: str | None = None
    drift_report_id: str | None = None

    def to_tags(self) -> dict[str, str]:
        """Every lineage tag as MLflow stores it (text); None becomes an empty tag."""

        def text(value: object) -> str:
            return "" if value is None else str(value)

        accuracy = self.validation_accuracy
        return {
            "validation_accuracy": "" if accuracy is None else f"{accuracy:.6f}",
            "validation_rows": text(self.validation_rows),
            "window": text(self.window),
            "training_batch_ids": ",".join(map(str, self.training_batch_ids)),
            "holdout_batch_id": text(self.holdout_batch_id),
            "source": text(self.source),
            "trigger": text(self.trigger),
            "drift_report_id": text(self.drift_report_id),
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str] | None) -> Lineage:
        """The lineage in a version's tags; a missing or empty tag reads as None (``()``
        for the batch ids), so versions registered before a tag existed still read.

        Raises:
            ValueError: a numeric tag holds text that is not a number.
        """
        tags = tags or {}

        def get(key: str) -> str | None:
            return tags.get(key) or None

        accuracy, rows, holdout = (
            get("validation_accuracy"),
            get("validation_rows"),
            get("holdout_batch_id"),
        )
        return cls(
            validation_accuracy=float(accuracy) if accuracy else None,
            validation_rows=int(rows) if rows else None,
            window=get("window"),
            training_batch_ids=tuple(
                int(b) for b in (get("training_batch_ids") or "").split(",") if b
            ),
            holdout_batch_id=int(holdout) if holdout else None,
            source=get("source"),
            trigger=get("trigger"),
            drift_report_id=get("drift_report_id"),
        )


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and the lineage stored in its tags (:class:`Lineage`)."""

    name: str
    version: int
    run_id: str | None
    validation_accuracy: float | None
    training_batch_ids: list[int] = field(default_factory=list)
    source: str | None = None
    validation_rows: int | None = None
    holdout_batch_id: int | None = None

    @property
    def validation_errors(self) -> int | None:
        """Errors on the validation rows, from the stored accuracy and row count."""
        if self.validation_accuracy is None or not self.validation_rows:
            return None
        return round((1 - self.validation_accuracy) * self.validation_rows)

    @property
    def uri(self) -> str:
        """Pinned URI (``models:/name/version``): never moves under the reader."""
        return f"models:/{self.name}/{self.version}"


def bound_mlflow_http(
    max_retries: int | None = None,
    timeout_seconds: float | None = None,
    *,
    backoff_factor: int | None = None,
) -> None:
    """Bound every MLflow HTTP call of this process: the one place the flows, the API and
    the console set MLflow's client limits.

    MLflow's HTTP client retries 7 times with exponential backoff and waits up to 120 s
    per attempt by default, so one call to a hung or dead server can block a 30 s cycle,
    an API reload loop or a console page for minutes. MLflow reads its limits from
    environment variables, which are process-wide: each is set only when not already
    set, so an explicit ``MLFLOW_HTTP_REQUEST_*`` variable wins. None leaves MLflow's
    default.

    Args:
        max_retries: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (attempts after the first).
        timeout_seconds: ``MLFLOW_HTTP_REQUEST_TIMEOUT`` per attempt, in seconds; MLflow
            takes whole seconds, so it is rounded, and at least 1.
        backoff_factor: ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` in seconds (waits of
            0, 2×, 4×… this between retries).
    """
    if max_retries is not None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
    if backoff_factor is not None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(backoff_factor))
    if timeout_seconds is not None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(timeout_seconds))))


def client(
    tracking_uri: str,
    *,
    http_max_retries: int | None = None,
    http_timeout_seconds: int | None = None,
) -> MlflowClient:
    """A client bound to ``tracking_uri`` (also made the process default for fluent calls).

    MLflow's usage telemetry is off unless ``MLFLOW_DISABLE_TELEMETRY`` says otherwise.

    Flow processes pass ``http_max_retries`` / ``http_timeout_seconds``
    (``IAC_MLFLOW_HTTP_MAX_RETRIES`` / ``IAC_MLFLOW_HTTP_TIMEOUT_SECONDS``) to
    :func:`bound_mlflow_http`; Prefect's task retries handle longer outages. With
    retries, the backoff factor drops to 1 s (waits of 0 s, 2 s, 4 s…).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    bound_mlflow_http(
        http_max_retries,
        http_timeout_seconds,
        backoff_factor=1 if http_max_retries is not None else None,
    )
    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """Id of experiment ``name``, created if missing (safe when two processes race)."""
    from mlflow.exceptions import MlflowException

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
    from mlflow.exceptions import MlflowException

    try:
        version = mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    lineage = Lineage.from_tags(version.tags)
    return ModelRef(
        name=name,
        version=int(version.version),
        run_id=version.run_id,
        validation_accuracy=lineage.validation_accuracy,
        training_batch_ids=list(lineage.training_batch_ids),
        source=lineage.source,
        validation_rows=lineage.validation_rows,
        holdout_batch_id=lineage.holdout_batch_id,
    )


def load_model(uri: str, tracking_uri: str) -> Any:
    """Load a scikit-learn model from a pinned ``models:/name/version`` URI.

    Cached per (tracking URI, model URI): a registered version never changes.
    """
    return _load_model(uri, tracking_uri)


@lru_cache(maxsize=4)
def _load_model(uri: str, tracking_uri: str) -> Any:
    import mlflow.sklearn

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.sklearn.load_model(uri)


class UnloadableModelError(LookupError):
    """A registered version whose artifacts cannot be loaded (missing, truncated, corrupt).

    A ``LookupError``: callers that already report "nothing to roll back to" report this
    one the same way, as a sentence, never a traceback.
    """

    def __init__(self, name: str, version: int, cause: BaseException) -> None:
        self.name, self.version = name, version
        detail = str(cause).splitlines()[0][:200] if str(cause) else ""
        self.cause = f"{type(cause).__name__}: {detail}" if detail else type(cause).__name__
        super().__init__(f"version {version} of {name!r} cannot be loaded ({self.cause})")


def load_fresh(mlflow_client: MlflowClient, name: str, version: int) -> Any:
    """Download and load ``models:/name/version`` through the registry, bypassing the cache.

    The same path the API takes to serve a version, so a version that passes here can be
    served. Used before an alias moves to a version.

    Raises:
        UnloadableModelError: the registry answers but the version's artifacts cannot be
            loaded (truncated or missing file, unpicklable model, unknown version).
        mlflow.exceptions.MlflowException, OSError: the registry itself is unreachable
            (transient: the caller retries later; nothing is decided about the version).
    """
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(mlflow_client.tracking_uri)
    try:
        return mlflow.sklearn.load_model(f"models:/{name}/{version}")
    except Exception as exc:
        # Broken model or broken server? Ask the server a cheap question: if it answers,
        # the model is what fails; if not, the error says nothing about the model.
        try:
            mlflow_client.get_model_version(name, str(version))
        except MlflowException as probe:
            if probe.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise exc from None
        except Exception:
            raise exc from None
        raise UnloadableModelError(name, version, exc) from exc


def is_loadable(mlflow_client: MlflowClient, name: str, version: int) -> bool:
    """Whether :func:`load_fresh` loads ``version``; transient registry errors propagate."""
    try:
        load_fresh(mlflow_client, name, version)
    except UnloadableModelError:
        return False
    return True


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
    calibration: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Log a trained challenger as an MLflow run: params, metrics, model with signature.

    ``lineage`` is logged as ``lineage.json``; ``calibration`` (CBPE's calibrator,
    :func:`ia_continu.monitoring.estimation.calibrator_to_dict`), when given, as
    ``calibration.json`` (read back by :func:`load_calibrator`).

    Returns:
        ``(run_id, model_uri)``; the model is not registered yet.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    experiment_id(mlflow_client, experiment)
    mlflow.set_experiment(experiment)
    signature = infer_signature(input_example, model.predict(input_example))
    with mlflow.start_run(run_name=f"retrain-{tags.get('trigger', 'manual')}", tags=tags) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(lineage, "lineage.json")
        if calibration is not None:
            mlflow.log_dict(calibration, CALIBRATION_ARTIFACT)
        # Explicit requirements: MLflow's inference spawns a subprocess (~10 s a model).
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=input_example,
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    return run.info.run_id, info.model_uri


def load_calibrator(client_or_uri: MlflowClient | str, model_ref: ModelRef) -> Calibrator | None:
    """CBPE's calibrator of ``model_ref``: ``calibration.json`` of the run that logged it.

    None when the version has none: a model without ``predict_proba``, a held-out set
    with a single outcome, a version registered before calibrators were logged, or a
    file that cannot be read as a calibrator (logged as a warning). A missing
    calibrator only means "no accuracy estimate": never a reason to fail a cycle.

    Args:
        client_or_uri: an MLflow client, or a tracking URI to build one from.
        model_ref: the registered version (its ``run_id`` holds the artifact).

    Raises:
        mlflow.exceptions.MlflowException, OSError: the tracking server is unreachable
            (transient: the flow's retries handle it).
    """
    from ia_continu.monitoring.estimation import calibrator_from_dict

    mlflow_client = client(client_or_uri) if isinstance(client_or_uri, str) else client_or_uri
    if model_ref.run_id is None:
        return None
    names = {a.path for a in mlflow_client.list_artifacts(model_ref.run_id)}
    if CALIBRATION_ARTIFACT not in names:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow_client.download_artifacts(model_ref.run_id, CALIBRATION_ARTIFACT, tmp)
        try:
            return calibrator_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            logger.warning(
                "{} version {}: {} of run {} unreadable, no accuracy estimate: {}",
                model_ref.name,
                model_ref.version,
                CALIBRATION_ARTIFACT,
                model_ref.run_id,
                exc,
            )
            return None


def register(
    mlflow_client: MlflowClient, *, name: str, model_uri: str, tags: dict[str, str]
) -> int:
    """Register ``model_uri`` (as returned by :func:`log_challenger`) as a new version.

    ``mlflow.register_model`` creates the registered model if needed and links the
    MLflow 3 logged model (``models:/m-…``) to the version.
    """
    import mlflow

    mlflow.set_tracking_uri(mlflow_client.tracking_uri)
    version = mlflow.register_model(model_uri, name, tags=tags)
    return int(version.version)


def promote(mlflow_client: MlflowClient, name: str, version: int) -> int | None:
    """Point ``champion`` at ``version`` and ``previous`` at the old champion.

    The caller has checked that ``version`` loads (see :func:`load_fresh`). ``previous``
    only ever points at a version that loads: an old champion that no longer loads is
    not kept as a rollback target (``previous`` is left as it was). ``previous`` is moved
    first, so a failure between the two calls leaves the old champion serving.

    Returns:
        The old champion version, or None if there was none.

    Raises:
        mlflow.exceptions.MlflowException, OSError: the registry is unreachable; an
            alias may already have moved, never ``champion`` to an unchecked version.
    """
    old = get_alias(mlflow_client, name, CHAMPION)
    if old is not None and old.version != version:
        if is_loadable(mlflow_client, name, old.version):
            mlflow_client.set_registered_model_alias(name, PREVIOUS, str(old.version))
        else:
            logger.warning(
                "{}: old champion version {} cannot be loaded; previous not moved to it",
                name,
                old.version,
            )
    mlflow_client.set_registered_model_alias(name, CHAMPION, str(version))
    return old.version if old is not None else None


def rollback(mlflow_client: MlflowClient, name: str) -> int:
    """Point ``champion`` back at ``previous``, after checking that ``previous`` loads.

    What an operator expects from "roll back": the version that served before comes
    back, and nothing broken is left behind. So:

    * ``previous`` is loaded first; if it cannot be, nothing changes.
    * ``champion`` then moves to it; the old champion becomes ``previous`` when it
      loads (so a second rollback undoes the first), otherwise ``previous`` is removed:
      a version that cannot be loaded is never a rollback target.

    Returns:
        The new champion version.

    Raises:
        LookupError: no ``previous`` version, or it is the champion already.
        UnloadableModelError: ``previous`` cannot be loaded (a ``LookupError``); no
            alias moved.
        mlflow.exceptions.MlflowException, OSError: the registry is unreachable.
    """
    previous = get_alias(mlflow_client, name, PREVIOUS)
    if previous is None:
        raise LookupError(f"registered model {name!r} has no {PREVIOUS!r} alias")
    current = get_alias(mlflow_client, name, CHAMPION)
    if current is not None and current.version == previous.version:
        raise LookupError(
            f"registered model {name!r}: {PREVIOUS!r} is the champion already "
            f"(version {previous.version})"
        )
    load_fresh(mlflow_client, name, previous.version)  # raises UnloadableModelError
    keep = current is not None and is_loadable(mlflow_client, name, current.version)
    mlflow_client.set_registered_model_alias(name, CHAMPION, str(previous.version))
    if current is not None and keep:
        mlflow_client.set_registered_model_alias(name, PREVIOUS, str(current.version))
    else:
        mlflow_client.delete_registered_model_alias(name, PREVIOUS)
        if current is not None:
            logger.warning(
                "{}: rolled back from version {}, which cannot be loaded; previous removed",
                name,
                current.version,
            )
    return previous.version


def log_drift_run(
    *, experiment: str, report: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]
) -> str:
    """Log one drift report as an MLflow run (metrics per feature + ``drift_report.json``)."""
    import mlflow

    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"drift-batch-{tags.get('batch_id', '?')}", tags=tags) as run:
        mlflow.log_metrics(metrics)
        mlflow.log_text(json.dumps(report, indent=2, default=str), "drift_report.json")
    return str(run.info.run_id)
