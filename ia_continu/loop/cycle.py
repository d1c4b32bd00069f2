"""One continuous-training cycle as plain functions: ingest, detect drift, retrain.

Each function is either I/O (database, MLflow: the flows retry these) or pure
computation (never retried). Flows in ``flows/`` only wire them together.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from loguru import logger

from ia_continu.data.sources import BatchSource, Schema, build_source
from ia_continu.data.storage import repository
from ia_continu.data.storage.engine import get_engine
from ia_continu.data.storage.repository import IngestResult
from ia_continu.loop.policy import decide_retrain
from ia_continu.loop.results import DriftReport, GateResult, Model, RetrainOutcome, Trigger
from ia_continu.monitoring.concept_drift import BatchScore, ErrorCount, detect_concept_drift
from ia_continu.monitoring.data_drift import detect_data_drift
from ia_continu.settings import Settings
from ia_continu.training import registry

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# The training stack (scikit-learn estimators and metrics, ``training``, ``windows``,
# ``promotion``, the CBPE calibrator's fit) is imported by the retrain functions that use
# it: the flow process imports this module on every cycle, and most cycles do not retrain.


def registry_client(settings: Settings) -> MlflowClient:
    """The MLflow client of a flow process: bounded HTTP retries and timeout (see settings)."""
    return registry.client(
        settings.mlflow_tracking_uri,
        http_max_retries=settings.mlflow_http_max_retries,
        http_timeout_seconds=settings.mlflow_http_timeout_seconds,
    )


def stream_source(settings: Settings) -> BatchSource:
    """The stream the cycle reads: ``build_source``, or with ``IAC_DATA_SOURCE=serving`` the
    serving stream (``serving:<registered model name>``, the seed source's schema).

    Raises:
        sources.SourceConfigError: a replay setting names a missing file or column.
    """
    if settings.data_source == "serving":
        # Imported here: the serving source is needed only in serving mode.
        from ia_continu.data import serving_source

        return serving_source.stream(settings)
    return build_source(settings)


def ingest(settings: Settings, ingest_key: str | None = None) -> IngestResult:
    """Validate the next batch of the configured source and persist it exactly once (I/O).

    A batch that fails validation (``ia_continu.data.validation``, ``IAC_MIN_BATCH_ROWS``)
    is quarantined, not stored: the stream moves past it and the cycle goes on.

    Returns:
        The :class:`~ia_continu.data.storage.repository.IngestResult`: ``created`` is False
        when ``ingest_key`` had already stored (or quarantined) this batch; a quarantined
        batch has ``batch_id`` None, ``quarantine_id`` set and ``reason`` naming columns,
        rows and rules (no values).

    With ``IAC_DATA_SOURCE=serving`` the batch is made of the served predictions whose
    labels have had time to land (``ia_continu.data.serving_source.ingest``), with
    ``labelled_share``, ``served_rows`` and ``late_labels`` set; ``batch_id`` None (and
    not quarantined) when no labelled prediction is old enough yet.

    Raises:
        sqlalchemy.exc.OperationalError: database unreachable, locked or read-only;
            nothing was written.
    """
    if settings.data_source == "serving":
        from ia_continu.data import serving_source

        return serving_source.ingest(settings, ingest_key)
    source = build_source(settings)
    info = repository.ingest_next(
        get_engine(settings.resolved_database_url),
        source,
        ingest_key,
        min_rows=settings.min_batch_rows,
    )
    return repository.ingest_summary(info)


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
    champion_model: Model | None
    previous_report: repository.DriftFlags | None = None
    champion_problem: str | None = None
    service: list[BatchScore] = field(default_factory=list)
    cycles_since_retrain: int | None = None


def load_champion_model(
    settings: Settings, champion: registry.ModelRef | None
) -> tuple[Model | None, str | None]:
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
    source = stream_source(settings)
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
    service = (
        repository.champion_service(
            engine,
            source.name,
            champion.version,
            head=4 * settings.concept_drift_reference_batches,
            tail=max(settings.training_window_batches) + 1,
        )
        if champion is not None
        else []
    )
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
        service=service,
        cycles_since_retrain=repository.cycles_since_retrain(engine, source.name),
    )


def validation_count(champion: registry.ModelRef) -> ErrorCount | None:
    """The champion's errors on its validation rows, when the registry knows their number."""
    errors = champion.validation_errors
    if errors is None or not champion.validation_rows:
        return None
    return ErrorCount(champion.validation_rows, errors)


def evaluate_drift(inputs: DriftInputs, settings: Settings, force: bool = False) -> DriftReport:
    """Data drift, performance drift and the retrain decision on the newest batch (pure).

    The report's ``id`` is fresh; ``decision`` says whether to retrain and with which
    trigger (:func:`ia_continu.loop.policy.decide_retrain`, the one place that decides).
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
        from ia_continu.training.trainer import correct_mask

        labelled = inputs.newest[inputs.newest[inputs.schema.target].notna()]
        right = correct_mask(inputs.champion_model, labelled, inputs.schema)
        performance = detect_concept_drift(
            ErrorCount(len(right), int(len(right) - right.sum())),
            inputs.current_batch_ids[-1],
            validation=validation_count(inputs.champion),
            service=inputs.service,
            reference_batches=settings.concept_drift_reference_batches,
            alpha=settings.concept_drift_alpha,
            min_effect=settings.concept_drift_min_effect,
        )
    decision = decide_retrain(
        has_champion=inputs.champion is not None,
        concept_drift=bool(performance and performance.drift),
        concept_reason=performance.reason if performance else None,
        data_drift=bool(data and data.drift),
        retrain_on_data_drift=settings.retrain_on_data_drift,
        force=force,
        champion_problem=inputs.champion_problem,
        cycles_since_retrain=inputs.cycles_since_retrain,
        challenge_every=settings.challenge_every_cycles,
    )
    previous = inputs.previous_report
    champion_version = inputs.champion.version if inputs.champion else None
    # Alert on a change of state, not on every cycle of a lasting shift.
    data_drift_new = bool(data and data.drift) and not (
        previous is not None
        and previous.data_drift
        and previous.champion_version == champion_version
    )
    return DriftReport(
        id=uuid.uuid4().hex,
        created_at=datetime.now(UTC),
        data_drift_new=data_drift_new,
        source=inputs.source,
        batch_id=inputs.current_batch_ids[-1],
        current_batch_ids=inputs.current_batch_ids,
        reference_batch_ids=list(inputs.champion.training_batch_ids) if inputs.champion else [],
        champion_version=champion_version,
        champion_problem=inputs.champion_problem,
        data_drift=data,
        performance=performance,
        decision=decision,
    )


def metric_key(name: str) -> str:
    """``name`` made a valid MLflow metric key (letters, digits, ``_-./`` and spaces)."""
    return re.sub(r"[^\w\-./ ]", "_", name)[:250]


def drift_metrics(report: DriftReport) -> dict[str, float]:
    """Flat MLflow metrics of a report: per-feature statistic, p-value, effect, flags."""
    metrics: dict[str, float] = {"retrain": float(report.decision.retrain)}
    data = report.data_drift
    if data:
        metrics["data_drift"] = float(data.drift)
        metrics["drift_share"] = float(data.drift_share)
        for item in data.features:
            name = metric_key(item.feature)
            for key in ("statistic", "p_value", "p_adjusted", "effect", "psi"):
                value = float(getattr(item, key))
                if value == value and abs(value) != float("inf"):  # MLflow rejects NaN/inf
                    metrics[f"{name}.{key}"] = value
            metrics[f"{name}.drifted"] = float(item.drifted)
    perf = report.performance
    if perf:
        metrics["champion_accuracy"] = float(perf.accuracy)
        metrics["concept_drift"] = float(perf.drift)
    return metrics


def persist_drift_report(settings: Settings, report: DriftReport) -> str:
    """Store the report in the database and log it to MLflow (I/O, idempotent on its id)."""
    engine = get_engine(settings.resolved_database_url)
    stored = report.to_json()
    report_id = repository.save_drift_report(
        engine,
        source=report.source,
        batch_id=report.batch_id,
        champion_version=report.champion_version,
        data_drift=report.has_data_drift,
        concept_drift=report.concept_drift,
        retrain=report.decision.retrain,
        report=stored,
        report_id=report.id,
    )
    if repository.get_drift_report(engine, report_id)["mlflow_run_id"]:
        return report_id  # a retry after the MLflow run was logged: log it once only
    registry.experiment_id(registry_client(settings), settings.mlflow_experiment)
    run_id = registry.log_drift_run(
        experiment=settings.mlflow_experiment,
        report=stored,
        metrics=drift_metrics(report),
        tags={
            "kind": "drift_report",
            "drift_report_id": report_id,
            "batch_id": str(report.batch_id),
            "source": report.source,
        },
    )
    repository.attach_mlflow_run(engine, report_id, run_id)
    return report_id


@dataclass
class TrainingWindow:
    """The batches a challenger may learn from, the newest held out, and the champion.

    Attributes:
        frame: labelled rows of ``batch_ids`` with a ``batch_id`` column.
        batch_ids: batch ids in stream order; the newest is held out (with a single
            batch, its last quarter is: the bootstrap case).
        change_batch_id: first batch of the new concept estimated by the drift report
            that triggered the retrain, or None.
        min_holdout_rows: fewest held-out rows of a split within the newest batch.
    """

    source: str
    schema: Schema
    frame: pd.DataFrame
    batch_ids: list[int]
    champion: registry.ModelRef | None
    champion_model: Model | None
    change_batch_id: int | None = None
    min_holdout_rows: int = 30

    @property
    def within_newest(self) -> bool:
        """Train and hold out within the newest batch: a single batch (the bootstrap), or a
        concept drift first seen in the newest batch (no post-change batch before it) whose
        last quarter holds at least ``min_holdout_rows`` rows (``IAC_MIN_BATCH_ROWS``: the
        fewest rows the loop judges a model on)."""
        if len(self.batch_ids) < 2:
            return True
        newest = self.frame[self.frame["batch_id"] == self.batch_ids[-1]]
        return (
            self.change_batch_id is not None
            and self.change_batch_id >= self.batch_ids[-1]
            and len(newest) - int(len(newest) * 0.75) >= self.min_holdout_rows
        )

    def split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(rows the window may train on, held-out rows)``, in time order.

        The held-out rows are the newest batch, or its last quarter when
        :attr:`within_newest` (then its first three quarters are the training rows).
        """
        from ia_continu.training.trainer import split_holdout

        if self.within_newest:
            return split_holdout(self.frame[self.frame["batch_id"] == self.batch_ids[-1]])
        return split_holdout(self.frame)

    @property
    def holdout(self) -> pd.DataFrame:
        """The held-out rows the gate and the registry load-back score (see :meth:`split`)."""
        return self.split()[1]

    @property
    def holdout_batch_id(self) -> int:
        """The newest batch."""
        return self.batch_ids[-1]


def load_training_window(settings: Settings, drift_report_id: str | None = None) -> TrainingWindow:
    """The newest ``max(IAC_TRAINING_WINDOW_BATCHES) + 1`` batches and the champion (I/O).

    With ``drift_report_id``, the change point that report estimated (if any) is passed on,
    so the window can start at the change.

    Raises:
        LookupError: no batch has been ingested yet.
    """
    source = stream_source(settings)
    engine = get_engine(settings.resolved_database_url)
    batches = repository.latest_batches(
        engine, source.name, max(settings.training_window_batches) + 1
    )
    if not batches:
        raise LookupError(f"no batch ingested yet for {source.name}: run the generate flow")
    ids = [b.id for b in batches]
    frame = repository.load_frame(engine, ids)
    champion = registry.get_alias(registry_client(settings), settings.registered_model_name)
    model, _problem = load_champion_model(settings, champion)
    change = None
    if drift_report_id:
        performance = repository.get_drift_report(engine, drift_report_id)["report"].get(
            "performance"
        )
        change = (performance or {}).get("change_batch_id")
    return TrainingWindow(
        source=source.name,
        schema=source.schema,
        frame=frame,
        batch_ids=ids,
        champion=champion,
        champion_model=model,
        change_batch_id=change,
        min_holdout_rows=settings.min_batch_rows,
    )


def _rows(frame: pd.DataFrame, batch_ids: Sequence[int]) -> pd.DataFrame:
    return frame[frame["batch_id"].isin(batch_ids)]


def fit_calibration(
    model: Model, features: pd.DataFrame, correct: np.ndarray
) -> dict[str, object] | None:
    """CBPE's calibrator of ``model`` on held-out rows, with its outputs there, as JSON,
    or None (pure).

    NannyML's CBPE fits its calibrator on reference rows the model was not trained on
    (nannyml.readthedocs.io, "Confidence-based Performance Estimation"); here the gated
    model's held-out rows: its probability of the predicted class vs whether that
    prediction was right (:func:`ia_continu.monitoring.estimation.fit_calibrator`). The same rows'
    predicted classes (as text) and top-class probabilities are kept with it
    (``reference_outputs``): out-of-sample outputs, the reference of the serving
    monitor's prediction drift (:mod:`ia_continu.monitoring.serving_monitor`), where the model's
    outputs on its own training rows would be over-confident for a model that memorises
    them (a random forest).

    A model refitted on the held-out rows (``IAC_REFIT_ON_HOLDOUT``) has no unseen
    labelled row left, so it inherits this calibration and these reference outputs, as
    it inherits the gated model's held-out accuracy as its ``validation_accuracy``: same
    estimator, all but one batch of the same rows. Its own out-of-sample outputs may be
    slightly more confident (it saw one batch more); nothing measures that without new
    labels.

    Args:
        model: the gated model (``predict_proba`` with rows summing to 1, ``classes_``
            in its column order).
        features: the held-out rows' features, shape (n, features).
        correct: shape (n,), whether ``model`` predicted each row right.

    Returns:
        :func:`ia_continu.monitoring.estimation.calibrator_to_dict` of the calibrator, with
        ``reference_outputs`` (n rows) when the model has ``classes_``; None when the
        model has no ``predict_proba`` or the held-out predictions are all right (or all
        wrong), so a calibrator cannot be fitted (logged).
    """
    from ia_continu.monitoring.estimation import (
        calibrator_to_dict,
        fit_calibrator,
        top_class_outputs,
    )

    if not hasattr(model, "predict_proba") or len(features) == 0:
        return None
    try:
        probabilities = np.asarray(model.predict_proba(features), dtype=np.float64)
        classes = getattr(model, "classes_", None)
        outputs = None if classes is None else top_class_outputs(probabilities, classes)
        return calibrator_to_dict(fit_calibrator(probabilities, correct, reference_outputs=outputs))
    except ValueError as exc:
        logger.info("no CBPE calibrator for this challenger: {}", exc)
        return None


def train_and_gate(window: TrainingWindow, settings: Settings) -> tuple[Model | None, GateResult]:
    """Choose a training window, train a challenger, gate it against the champion (pure).

    1. The window (``ia_continu.training.windows.choose_window``): since the change point, or the
       longest candidate size within one standard error of the best on the held-out
       newest batch. A single batch is the bootstrap: its first 3/4 trains, its last 1/4
       is held out. A change first seen in the newest batch (:attr:`TrainingWindow.
       within_newest`) splits that batch the same way, and the candidates are its first
       3/4 alone or after older batches.
    2. The gate (``ia_continu.training.promotion.decide_promotion``) on the held-out rows: beat the
       majority class by ``IAC_PROMOTION_MIN_LIFT_OVER_BASELINE``, and the champion by
       ``IAC_PROMOTION_MARGIN`` with a McNemar p-value below ``IAC_PROMOTION_ALPHA``.
    3. If it passes and ``IAC_REFIT_ON_HOLDOUT``, the chosen window shifted by one batch
       (ending at the held-out batch; after a split, the chosen batches with the whole
       newest batch) is trained on for the model that will be promoted.

    A window that cannot be trained on (a single class, no labelled row) gives no
    challenger, not a failure: the champion keeps serving.

    Returns:
        ``(model to register or None, gate result)``: the
        :class:`~ia_continu.loop.results.GateResult` holds the gate's verdict and figures,
        the window chosen, what the returned model was trained on, its held-out accuracy
        (what the registry load-back must reproduce), macro-averaged F1 (the figure that
        counts every class alike on imbalanced and multi-class streams) and CBPE's
        calibrator (:func:`fit_calibration`). Without a challenger the model is None and
        the result says why (:meth:`GateResult.no_challenger`).

    Raises:
        ValueError: the window cannot be trained on and there is no champion to keep.
    """
    from sklearn.metrics import f1_score

    from ia_continu.training.promotion import decide_promotion
    from ia_continu.training.trainer import accuracy, majority_accuracy, train
    from ia_continu.training.windows import WindowChoice, choose_window

    schema = window.schema
    newest = window.holdout_batch_id
    # A change first seen in the newest batch leaves no post-change batch to train on
    # before it: split that batch in time order as the bootstrap does, so the challenger
    # learns the new concept now instead of one cycle later.
    within = window.within_newest
    train_rows, holdout = window.split()
    models: dict[tuple[int, ...], Model] = {}

    def fit(rows: pd.DataFrame) -> Model:
        key = tuple(sorted(int(b) for b in rows["batch_id"].unique()))
        if key not in models:
            models[key] = train(rows, schema, settings.estimator, settings.estimator_params)
        return models[key]

    try:
        if len(window.batch_ids) < 2:
            choice = WindowChoice(
                "bootstrap",
                (newest,),
                (newest,),
                newest,
                "a single batch: trained on its first 3/4, its last 1/4 held out",
            )
            gated = train(train_rows, schema, settings.estimator, settings.estimator_params)
        elif within:
            # The held-out rows are the newest batch's last quarter, labelled with an id no
            # stored batch has (one past the newest), so the candidate windows (the newest
            # batch's first 3/4, alone or after older batches) are scored on the same rows.
            held_id = newest + 1
            framed = pd.concat(
                [
                    window.frame[window.frame["batch_id"] != newest],
                    train_rows,
                    holdout.assign(batch_id=held_id),
                ],
                ignore_index=True,
            )
            picked = choose_window(
                framed,
                [*window.batch_ids, held_id],
                settings.training_window_batches,
                lambda rows, held: accuracy(fit(rows), held, schema),
                change_batch_id=newest,
                min_change_rows=settings.training_min_change_rows,
                one_se=settings.training_window_one_se,
            )
            gated = fit(_rows(framed, picked.batch_ids))
            # Refit on the chosen batches with the whole newest batch (held-out rows too).
            choice = replace(
                picked,
                refit_batch_ids=picked.batch_ids,
                holdout_batch_id=newest,
                reason=f"concept drift first seen in batch {newest}: its first 3/4 trains, "
                f"its last 1/4 is held out; {picked.reason}",
            )
        else:
            choice = choose_window(
                window.frame,
                window.batch_ids,
                settings.training_window_batches,
                lambda rows, held: accuracy(fit(rows), held, schema),
                change_batch_id=window.change_batch_id,
                min_change_rows=settings.training_min_change_rows,
                one_se=settings.training_window_one_se,
            )
            gated = fit(_rows(window.frame, choice.batch_ids))
    except ValueError as exc:
        if window.champion_model is None:
            raise
        return None, GateResult.no_challenger(
            why=str(exc),
            champion_accuracy=accuracy(window.champion_model, holdout, window.schema),
            margin=settings.promotion_margin,
            holdout_rows=len(holdout),
        )
    labelled = holdout[holdout[schema.target].notna()]
    truth = labelled[schema.target].astype(str).to_numpy()
    # One prediction per model and row, for the paired test and the macro-F1 alike.
    predicted = {
        name: np.asarray(m.predict(labelled[list(schema.features)])).astype(str)
        for name, m in (("challenger", gated), ("champion", window.champion_model))
        if m is not None
    }
    decision = decide_promotion(
        predicted["challenger"] == truth,
        predicted["champion"] == truth if "champion" in predicted else None,
        baseline_accuracy=majority_accuracy(labelled, schema),
        alpha=settings.promotion_alpha,
        margin=settings.promotion_margin,
        min_lift_over_baseline=settings.promotion_min_lift_over_baseline,
    )
    model, trained_ids, trained = gated, choice.batch_ids, train_rows
    if len(window.batch_ids) >= 2:
        trained = (
            pd.concat([_rows(window.frame, choice.batch_ids[:-1]), train_rows])
            if within
            else _rows(window.frame, choice.batch_ids)
        )
    refit = False
    if (
        decision.promote
        and settings.refit_on_holdout
        and (within or choice.refit_batch_ids != trained_ids)
    ):
        refit_rows = _rows(window.frame, choice.refit_batch_ids)
        try:
            model = train(refit_rows, schema, settings.estimator, settings.estimator_params)
            trained_ids, trained, refit = choice.refit_batch_ids, refit_rows, True
        except ValueError as exc:  # the shifted window holds a single class: keep the gated
            logger.info("no refit on the held-out batch ({}): the gated model is kept", exc)
    macro_f1 = {
        f"{name}_macro_f1": float(f1_score(truth, labels, average="macro", zero_division=0))
        for name, labels in predicted.items()
    }
    # The gated model's, also when ``model`` is its refit: only it has unseen labelled rows.
    calibration = fit_calibration(
        gated, labelled[list(schema.features)], predicted["challenger"] == truth
    )
    return model, GateResult(
        promote=decision.promote,
        challenger_accuracy=decision.challenger_accuracy,
        champion_accuracy=decision.champion_accuracy,
        baseline_accuracy=decision.baseline_accuracy,
        p_value=decision.p_value,
        margin=decision.margin,
        reason=decision.reason,
        window=choice,
        training_batch_ids=[int(b) for b in trained_ids],
        train_rows=len(trained),
        holdout_rows=len(labelled),
        model_holdout_accuracy=accuracy(model, labelled, schema),
        refit=refit,
        challenger_macro_f1=macro_f1.get("challenger_macro_f1"),
        champion_macro_f1=macro_f1.get("champion_macro_f1"),
        calibration=calibration,
    )


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
    from ia_continu.training.promotion import FLOAT_SLACK
    from ia_continu.training.trainer import accuracy

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
    challenger: Model | None,
    gate: GateResult,
    *,
    trigger: Trigger,
    drift_report_id: str | None,
) -> RetrainOutcome:
    """Log the challenger run to MLflow; if the gate passed, register, check and promote it (I/O).

    A rejected challenger leaves the champion and its reference as they are: while
    concept drift lasts, the next cycles keep looking for a better challenger. The MLflow
    run records the window chosen and why (params ``window``, tag ``window_reason``,
    lineage ``window_scores``); the registered version's tags carry its validation
    accuracy and row count, the reference of the concept-drift test.

    A challenger that passed the gate is registered, then loaded back from the registry
    and scored again (:func:`load_back_problem`) before any alias moves. A version that
    fails is tagged ``rejected_reason``, never aliased, and the outcome says why; the
    champion keeps serving. The run's ``promoted`` tag turns ``true`` only once
    ``champion`` points at the version.

    Returns:
        The :class:`~ia_continu.loop.results.RetrainOutcome`; ``version`` is the
        registered version (also when the load-back rejected it), None when nothing was
        registered.

    Raises:
        mlflow.exceptions.MlflowException, OSError: MLflow unreachable (the flow retries;
            the aliases are never left pointing at an unchecked version).
    """
    outcome = RetrainOutcome.of_gate(
        gate,
        previous_version=window.champion.version if window.champion else None,
        trigger=trigger,
        drift_report_id=drift_report_id,
    )
    choice = gate.window
    if challenger is None or choice is None or gate.challenger_accuracy is None:
        return outcome
    mlflow_client = registry_client(settings)
    name = settings.registered_model_name
    features = list(window.schema.features)
    lineage = {
        "source": window.source,
        "training_batch_ids": gate.training_batch_ids,
        "holdout_batch_id": window.holdout_batch_id,
        "train_rows": gate.train_rows,
        "holdout_rows": gate.holdout_rows,
        "window": choice.label,
        "window_reason": choice.reason,
        "window_scores": choice.scores,
        "gated_training_batch_ids": list(choice.batch_ids),
        "refit_on_holdout": gate.refit,
        "change_batch_id": window.change_batch_id,
    }
    metrics: dict[str, float] = {"challenger_accuracy": gate.challenger_accuracy}
    for key in (
        "champion_accuracy",
        "baseline_accuracy",
        "p_value",
        "model_holdout_accuracy",
        "challenger_macro_f1",
        "champion_macro_f1",
    ):
        value = getattr(gate, key)
        if value is not None:
            metrics[key] = float(value)
    for label, score in choice.scores.items():
        metrics[f"window_score.{metric_key(label)}"] = float(score)
    tags = {
        "kind": "retrain",
        "trigger": trigger,
        "drift_report_id": drift_report_id or "",
        "promoted": "false",  # set to true once champion points at the version
        "gate_passed": str(gate.promote).lower(),
        "source": window.source,
        "window": choice.label,
        "window_reason": choice.reason[:5000],
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
            "training_min_change_rows": settings.training_min_change_rows,
            "refit_on_holdout": settings.refit_on_holdout,
            "window": choice.label,
            "batch_size": settings.batch_size,
            "promotion_margin": settings.promotion_margin,
            "promotion_alpha": settings.promotion_alpha,
            "promotion_min_lift_over_baseline": settings.promotion_min_lift_over_baseline,
            "source": window.source,
            "train_rows": gate.train_rows,
        },
        metrics=metrics,
        tags=tags,
        lineage=lineage,
        calibration=gate.calibration,
    )
    outcome = outcome.model_copy(update={"run_id": run_id})
    if not gate.promote:
        return outcome
    version = registry.register(
        mlflow_client,
        name=name,
        model_uri=model_uri,
        tags=registry.Lineage(
            # The reference of the concept-drift test: the gated model's held-out accuracy
            # and row count (an honest estimate, also for a model refitted on them).
            validation_accuracy=gate.challenger_accuracy,
            validation_rows=gate.holdout_rows,
            window=choice.label,
            training_batch_ids=tuple(gate.training_batch_ids),
            holdout_batch_id=window.holdout_batch_id,
            source=window.source,
            trigger=trigger,
            drift_report_id=drift_report_id,
        ).to_tags(),
    )
    outcome = outcome.model_copy(update={"version": version})
    problem = load_back_problem(
        mlflow_client, name, version, window, gate.model_holdout_accuracy or 0.0
    )
    if problem is not None:
        mlflow_client.set_model_version_tag(name, str(version), "rejected_reason", problem)
        mlflow_client.set_tag(run_id, "rejected_reason", problem)
        outcome = outcome.model_copy(
            update={"reason": f"version {version} not promoted: {problem}; the champion stays"}
        )
        logger.warning("{}: {}", name, outcome.reason)
        return outcome
    previous = registry.promote(mlflow_client, name, version)
    mlflow_client.set_tag(run_id, "promoted", "true")
    return outcome.model_copy(update={"promoted": True, "previous_version": previous})
