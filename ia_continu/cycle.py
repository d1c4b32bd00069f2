"""One continuous-training cycle as plain functions: ingest, detect drift, retrain.

Each function is either I/O (database, MLflow: the flows retry these) or pure
computation (never retried). Flows in ``flows/`` only wire them together.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from loguru import logger
from mlflow.tracking import MlflowClient

from ia_continu import registry
from ia_continu.drift import detect_data_drift, detect_performance_drift
from ia_continu.policy import decide_retrain
from ia_continu.promotion import FLOAT_SLACK, decide_promotion
from ia_continu.settings import Settings
from ia_continu.sources import Schema, build_source
from ia_continu.storage import repository
from ia_continu.storage.schema import get_engine
from ia_continu.training import accuracy, majority_accuracy, split_holdout, train

Trigger = Literal["drift", "manual", "bootstrap"]


def registry_client(settings: Settings) -> MlflowClient:
    """The MLflow client of a flow process: bounded HTTP retries and timeout (see settings)."""
    return registry.client(
        settings.mlflow_tracking_uri,
        http_max_retries=settings.mlflow_http_max_retries,
        http_timeout_seconds=settings.mlflow_http_timeout_seconds,
    )


def ingest(settings: Settings, ingest_key: str | None = None) -> dict[str, Any]:
    """Validate the next batch of the configured source and persist it exactly once (I/O).

    A batch that fails validation (``ia_continu.validation``, ``IAC_MIN_BATCH_ROWS``)
    is quarantined, not stored: the stream moves past it and the cycle goes on.

    Returns:
        ``{"batch_id", "source", "position", "n_rows", "created", "quarantined",
        "quarantine_id", "reason"}``; ``created`` is False when ``ingest_key`` had already
        stored (or quarantined) this batch. A quarantined batch has ``batch_id`` None,
        ``quarantine_id`` set and ``reason`` naming columns, rows and rules (no values).

    Raises:
        sqlalchemy.exc.OperationalError: database unreachable, locked or read-only;
            nothing was written.
    """
    source = build_source(settings)
    info = repository.ingest_next(
        get_engine(settings.resolved_database_url),
        source,
        ingest_key,
        min_rows=settings.min_batch_rows,
    )
    quarantined = isinstance(info, repository.QuarantinedBatch)
    return {
        "batch_id": None if quarantined else info.id,
        "source": info.source,
        "position": info.position,
        "n_rows": info.n_rows,
        "created": info.created,
        "quarantined": quarantined,
        "quarantine_id": info.id if quarantined else None,
        "reason": info.reason if isinstance(info, repository.QuarantinedBatch) else None,
    }


@dataclass
class DriftInputs:
    """What a drift report compares: champion, its reference window, the current window."""

    source: str
    schema: Schema
    current_batch_ids: list[int]
    current: pd.DataFrame
    newest: pd.DataFrame
    champion: registry.ModelRef | None
    reference: pd.DataFrame | None
    champion_model: Any | None
    previous_report: dict[str, Any] | None = None
    champion_problem: str | None = None


def load_champion_model(
    settings: Settings, champion: registry.ModelRef | None
) -> tuple[Any | None, str | None]:
    """The champion's model, or ``(None, why)`` when its artifacts cannot be loaded (I/O).

    The promotion path only moves ``champion`` to a version that loads, but artifacts can
    break later (disk, a manual alias move). A broken champion must not fail every cycle:
    the cycle then reports it and retrains as if there were no champion, and the gate
    promotes a challenger that loads.

    Raises:
        mlflow.exceptions.MlflowException, OSError: the registry is unreachable (transient;
            the flow's retries handle it, nothing is decided about the version).
    """
    if champion is None:
        return None, None
    try:
        return registry.load_model(champion.uri, settings.mlflow_tracking_uri), None
    except Exception:
        # Broken artifact or broken server? load_fresh asks the server and raises the
        # transient error again when the server is what fails.
        try:
            return registry.load_fresh(
                registry_client(settings), champion.name, champion.version
            ), None
        except registry.UnloadableModelError as exc:
            logger.error("champion {} cannot be loaded: {}", champion.version, exc.cause)
            return None, f"champion version {champion.version} cannot be loaded ({exc.cause})"


def load_drift_inputs(settings: Settings) -> DriftInputs:
    """Read the current window, the champion and its training (reference) window (I/O).

    Raises:
        LookupError: no batch has been ingested for the configured source yet.
    """
    source = build_source(settings)
    engine = get_engine(settings.resolved_database_url)
    batches = repository.latest_batches(engine, source.name, settings.current_window_batches)
    if not batches:
        raise LookupError(f"no batch ingested yet for {source.name}: run the generate flow")
    ids = [b.id for b in batches]
    current = repository.load_frame(engine, ids)
    newest = current[current["batch_id"] == ids[-1]]
    champion = registry.get_alias(registry_client(settings), settings.registered_model_name)
    reference = None
    model, problem = load_champion_model(settings, champion)
    if model is not None and champion is not None and champion.training_batch_ids:
        reference = repository.load_frame(engine, champion.training_batch_ids)
    previous = repository.latest_drift_flags(engine, source.name)
    return DriftInputs(
        source.name,
        source.schema,
        ids,
        current,
        newest,
        champion,
        reference,
        model,
        previous,
        champion_problem=problem,
    )


def evaluate_drift(inputs: DriftInputs, settings: Settings, force: bool = False) -> dict[str, Any]:
    """Data drift, performance drift and the retrain decision, as a JSON-ready report (pure).

    The report's ``id`` is fresh; ``decision.retrain`` says whether to retrain.
    """
    data = performance = None
    if inputs.champion is not None and inputs.reference is not None:
        data = detect_data_drift(
            inputs.reference,
            inputs.current,
            numeric=inputs.schema.numeric,
            categorical=inputs.schema.categorical,
            alpha=settings.drift_alpha,
            min_wasserstein=settings.drift_min_wasserstein,
            min_psi=settings.drift_min_psi,
            min_features=settings.drift_min_features,
        )
    if inputs.champion is not None and inputs.champion_model is not None:
        performance = detect_performance_drift(
            accuracy(inputs.champion_model, inputs.newest, inputs.schema),
            inputs.champion.validation_accuracy,
            n=len(inputs.newest),
            floor=settings.accuracy_floor,
            tolerance=settings.accuracy_tolerance,
        )
    decision = decide_retrain(
        has_champion=inputs.champion is not None,
        concept_drift=bool(performance and performance.drift),
        data_drift=bool(data and data.drift),
        retrain_on_data_drift=settings.retrain_on_data_drift,
        force=force,
        champion_problem=inputs.champion_problem,
    )
    previous = inputs.previous_report
    champion_version = inputs.champion.version if inputs.champion else None
    # Alert on a change of state, not on every cycle of a lasting shift.
    data_drift_new = bool(data and data.drift) and not (
        previous is not None
        and previous["data_drift"]
        and previous["champion_version"] == champion_version
    )
    return {
        "id": uuid.uuid4().hex,
        "created_at": datetime.now(UTC).isoformat(),
        "data_drift_new": data_drift_new,
        "source": inputs.source,
        "batch_id": inputs.current_batch_ids[-1],
        "current_batch_ids": inputs.current_batch_ids,
        "reference_batch_ids": inputs.champion.training_batch_ids if inputs.champion else [],
        "champion_version": inputs.champion.version if inputs.champion else None,
        "champion_problem": inputs.champion_problem,
        "data_drift": data.to_dict() if data else None,
        "performance": performance.to_dict() if performance else None,
        "decision": {"retrain": decision.retrain, "reason": decision.reason},
    }


def metric_key(name: str) -> str:
    """``name`` made a valid MLflow metric key (letters, digits, ``_-./`` and spaces)."""
    return re.sub(r"[^\w\-./ ]", "_", name)[:250]


def drift_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Flat MLflow metrics of a report: per-feature statistic, p-value, effect, flags."""
    metrics: dict[str, float] = {"retrain": float(report["decision"]["retrain"])}
    data = report.get("data_drift")
    if data:
        metrics["data_drift"] = float(data["drift"])
        metrics["drift_share"] = float(data["drift_share"])
        for item in data["features"]:
            name = metric_key(item["feature"])
            for key in ("statistic", "p_value", "p_adjusted", "effect", "psi"):
                value = item[key]
                if value == value and abs(value) != float("inf"):  # MLflow rejects NaN/inf
                    metrics[f"{name}.{key}"] = float(value)
            metrics[f"{name}.drifted"] = float(item["drifted"])
    perf = report.get("performance")
    if perf:
        metrics["champion_accuracy"] = float(perf["accuracy"])
        metrics["concept_drift"] = float(perf["drift"])
    return metrics


def persist_drift_report(settings: Settings, report: dict[str, Any]) -> str:
    """Store the report in the database and log it to MLflow (I/O, idempotent on its id)."""
    engine = get_engine(settings.resolved_database_url)
    report_id = repository.save_drift_report(
        engine,
        source=report["source"],
        batch_id=report["batch_id"],
        champion_version=report["champion_version"],
        data_drift=bool(report["data_drift"] and report["data_drift"]["drift"]),
        concept_drift=bool(report["performance"] and report["performance"]["drift"]),
        retrain=report["decision"]["retrain"],
        report=report,
        report_id=report["id"],
    )
    if repository.get_drift_report(engine, report_id)["mlflow_run_id"]:
        return report_id  # a retry after the MLflow run was logged: log it once only
    registry.experiment_id(registry_client(settings), settings.mlflow_experiment)
    run_id = registry.log_drift_run(
        experiment=settings.mlflow_experiment,
        report=report,
        metrics=drift_metrics(report),
        tags={
            "kind": "drift_report",
            "drift_report_id": report_id,
            "batch_id": str(report["batch_id"]),
            "source": report["source"],
        },
    )
    repository.attach_mlflow_run(engine, report_id, run_id)
    return report_id


@dataclass
class TrainingWindow:
    """Training rows and held-out newest rows, with their lineage."""

    source: str
    schema: Schema
    train: pd.DataFrame
    holdout: pd.DataFrame
    training_batch_ids: list[int]
    holdout_batch_id: int
    champion: registry.ModelRef | None
    champion_model: Any | None


def load_training_window(settings: Settings) -> TrainingWindow:
    """The sliding window: newest ``training_window_batches`` + 1 batches, and the champion (I/O).

    The newest batch is held out; with a single batch, its last quarter is.

    Raises:
        LookupError: no batch has been ingested yet.
    """
    source = build_source(settings)
    engine = get_engine(settings.resolved_database_url)
    batches = repository.latest_batches(engine, source.name, settings.training_window_batches + 1)
    if not batches:
        raise LookupError(f"no batch ingested yet for {source.name}: run the generate flow")
    frame = repository.load_frame(engine, [b.id for b in batches])
    train_rows, holdout = split_holdout(frame)
    champion = registry.get_alias(registry_client(settings), settings.registered_model_name)
    model, _problem = load_champion_model(settings, champion)
    return TrainingWindow(
        source=source.name,
        schema=source.schema,
        train=train_rows,
        holdout=holdout,
        training_batch_ids=sorted(int(b) for b in train_rows["batch_id"].unique()),
        holdout_batch_id=int(holdout["batch_id"].iloc[-1]),
        champion=champion,
        champion_model=model,
    )


def train_and_gate(window: TrainingWindow, settings: Settings) -> tuple[Any, dict[str, Any]]:
    """Train a challenger, score it and the champion on the same held-out rows, gate (pure).

    A window that cannot be trained on (a single class, no labelled row) is a rejected
    challenger, not a failure: the champion keeps serving. The gate also asks the
    challenger to beat the held-out rows' majority class (by more than
    ``IAC_PROMOTION_MIN_LIFT_OVER_BASELINE``), the first model included: a model
    evaluated on a single-class hold-out is never promoted.

    Returns:
        ``(challenger_model or None, decision_dict)``.

    Raises:
        ValueError: the window cannot be trained on and there is no champion to keep.
    """
    champion_acc = (
        accuracy(window.champion_model, window.holdout, window.schema)
        if window.champion_model is not None
        else None
    )
    try:
        challenger = train(
            window.train, window.schema, settings.estimator, settings.estimator_params
        )
    except ValueError as exc:
        if champion_acc is None:
            raise
        return None, {
            "promote": False,
            "challenger_accuracy": None,
            "champion_accuracy": champion_acc,
            "margin": settings.promotion_margin,
            "reason": f"no challenger: {exc}",
            "baseline_accuracy": None,
        }
    challenger_acc = accuracy(challenger, window.holdout, window.schema)
    decision = decide_promotion(
        challenger_acc,
        champion_acc,
        settings.promotion_margin,
        baseline_accuracy=majority_accuracy(window.holdout, window.schema),
        min_lift_over_baseline=settings.promotion_min_lift_over_baseline,
    )
    return challenger, decision.to_dict()


def load_back_problem(
    mlflow_client: MlflowClient,
    name: str,
    version: int,
    window: TrainingWindow,
    expected_accuracy: float,
) -> str | None:
    """Why registered ``version`` must not be promoted, or None when it may (I/O).

    Loads ``models:/name/version`` back through the registry, as the API will, and
    scores it on the held-out rows: it must load, answer one prediction per row, and
    reproduce ``expected_accuracy`` (the in-memory challenger's).

    Raises:
        mlflow.exceptions.MlflowException, OSError: the registry is unreachable
            (transient: nothing is known about the version yet).
    """
    try:
        loaded = registry.load_fresh(mlflow_client, name, version)
    except registry.UnloadableModelError as exc:
        return f"it cannot be loaded back from the registry ({exc.cause})"
    features = window.holdout[list(window.schema.features)]
    try:
        predicted = np.asarray(loaded.predict(features))
        reloaded = accuracy(loaded, window.holdout, window.schema)
    except Exception as exc:  # a model that loads but cannot predict is as bad
        return f"the model loaded back cannot predict ({type(exc).__name__}: {exc})"[:300]
    if predicted.shape[0] != len(features):
        return f"the model loaded back gave {predicted.shape[0]} answers for {len(features)} rows"
    if abs(reloaded - expected_accuracy) > FLOAT_SLACK:
        return (
            f"the model loaded back scores {reloaded:.6f}, not the trained model's "
            f"{expected_accuracy:.6f}"
        )
    return None


def record_challenger(
    settings: Settings,
    window: TrainingWindow,
    challenger: Any,
    decision: dict[str, Any],
    *,
    trigger: Trigger,
    drift_report_id: str | None,
) -> dict[str, Any]:
    """Log the challenger run to MLflow; if the gate passed, register, check and promote it (I/O).

    A rejected challenger leaves the champion and its validation accuracy as they are:
    while performance drift lasts, the next cycles keep looking for a better challenger
    (re-baselining on rejection was measured: -0.9 accuracy points on Elec2).

    A challenger that passed the gate is registered, then loaded back from the registry
    and scored again (:func:`load_back_problem`) before any alias moves. A version that
    fails is tagged ``rejected_reason``, never aliased, and the outcome says why; the
    champion keeps serving. The run's ``promoted`` tag turns ``true`` only once
    ``champion`` points at the version.

    Returns:
        ``{"promoted", "version", "previous_version", "run_id", "challenger_accuracy",
        "champion_accuracy", "baseline_accuracy", "reason", "trigger",
        "drift_report_id"}``; ``version`` is the registered version (also when the
        load-back rejected it), None when nothing was registered.

    Raises:
        mlflow.exceptions.MlflowException, OSError: MLflow unreachable (the flow retries;
            the aliases are never left pointing at an unchecked version).
    """
    mlflow_client = registry_client(settings)
    name = settings.registered_model_name
    if challenger is None:
        return {
            "promoted": False,
            "version": None,
            "previous_version": window.champion.version if window.champion else None,
            "run_id": None,
            "challenger_accuracy": None,
            "champion_accuracy": decision["champion_accuracy"],
            "baseline_accuracy": decision.get("baseline_accuracy"),
            "reason": decision["reason"],
            "trigger": trigger,
            "drift_report_id": drift_report_id,
        }
    features = list(window.schema.features)
    lineage = {
        "source": window.source,
        "training_batch_ids": window.training_batch_ids,
        "holdout_batch_id": window.holdout_batch_id,
        "train_rows": len(window.train),
        "holdout_rows": len(window.holdout),
    }
    metrics: dict[str, float] = {"challenger_accuracy": decision["challenger_accuracy"]}
    if decision["champion_accuracy"] is not None:
        metrics["champion_accuracy"] = decision["champion_accuracy"]
    if decision.get("baseline_accuracy") is not None:
        metrics["baseline_accuracy"] = decision["baseline_accuracy"]
    tags = {
        "kind": "retrain",
        "trigger": trigger,
        "drift_report_id": drift_report_id or "",
        "promoted": "false",  # set to true once champion points at the version
        "gate_passed": str(decision["promote"]).lower(),
        "source": window.source,
    }
    run_id, model_uri = registry.log_challenger(
        mlflow_client,
        experiment=settings.mlflow_experiment,
        model=challenger,
        input_example=window.holdout[features].head(5),
        params={
            "estimator": settings.estimator,
            "estimator_params": settings.estimator_params,
            "training_window_batches": settings.training_window_batches,
            "batch_size": settings.batch_size,
            "promotion_margin": settings.promotion_margin,
            "promotion_min_lift_over_baseline": settings.promotion_min_lift_over_baseline,
            "source": window.source,
            "train_rows": len(window.train),
        },
        metrics=metrics,
        tags=tags,
        lineage=lineage,
    )
    outcome: dict[str, Any] = {
        "promoted": False,
        "version": None,
        "previous_version": window.champion.version if window.champion else None,
        "run_id": run_id,
        "challenger_accuracy": decision["challenger_accuracy"],
        "champion_accuracy": decision["champion_accuracy"],
        "baseline_accuracy": decision.get("baseline_accuracy"),
        "reason": decision["reason"],
        "trigger": trigger,
        "drift_report_id": drift_report_id,
    }
    if not decision["promote"]:
        return outcome
    version = registry.register(
        mlflow_client,
        name=name,
        model_uri=model_uri,
        tags={
            "validation_accuracy": f"{decision['challenger_accuracy']:.6f}",
            "training_batch_ids": ",".join(map(str, window.training_batch_ids)),
            "holdout_batch_id": str(window.holdout_batch_id),
            "source": window.source,
            "trigger": trigger,
            "drift_report_id": drift_report_id or "",
        },
    )
    outcome["version"] = version
    problem = load_back_problem(
        mlflow_client, name, version, window, decision["challenger_accuracy"]
    )
    if problem is not None:
        mlflow_client.set_model_version_tag(name, str(version), "rejected_reason", problem)
        mlflow_client.set_tag(run_id, "rejected_reason", problem)
        outcome["reason"] = f"version {version} not promoted: {problem}; the champion stays"
        logger.warning("{}: {}", name, outcome["reason"])
        return outcome
    outcome["previous_version"] = registry.promote(mlflow_client, name, version)
    mlflow_client.set_tag(run_id, "promoted", "true")
    outcome.update(promoted=True)
    return outcome
