"""Serving monitoring before labels arrive: serving drift and CBPE-estimated accuracy.

Each serving cycle looks at the newest served predictions (labelled or not: the
``serving_window`` of :mod:`ia_continu.data.serving_source`) and compares them with the
champion's references:

* **Serving drift**: :func:`ia_continu.monitoring.data_drift.detect_data_drift`, with the same tests,
  correction and effect-size floors as data drift (``IAC_DRIFT_*``), on the inputs plus
  the champion's outputs: the predicted class (categorical, chi-square and PSI) and the
  probability of that class (numeric, KS and normalised Wasserstein), one
  Benjamini-Hochberg family. ``data_drift`` is declared when at least
  ``IAC_DRIFT_MIN_FEATURES`` inputs drift, ``prediction_drift`` when the predicted class
  or its probability does.

  - The inputs' reference is the champion's training batches, as in the drift report.
  - The outputs' reference is **out-of-sample**: the gated model's predicted classes and
    top-class probabilities on its held-out rows, stored with its calibrator in
    ``calibration.json`` (:class:`ia_continu.monitoring.estimation.ReferenceOutputs`, written by
    ``cycle.fit_calibration``). A model's outputs on its own training rows are not a
    fair reference: a random forest, whose leaves memorise them, is far more confident
    there than on any new row, so a stable stream showed a probability drift on every
    window (5 of 5). A champion refitted on its held-out batch (``IAC_REFIT_ON_HOLDOUT``)
    keeps the gated model's calibrator and so these outputs too: the nearest
    out-of-sample outputs there are (it saw one batch more, and may be a little more
    confident on new rows).
  - **Smaller reference, less power.** The held-out rows are one batch or the last
    quarter of one (50 to a few hundred rows) against thousands of training rows. The
    KS and chi-square tests take unequal sizes, but their power follows the effective
    size n*m/(n+m): with 50 reference rows and a 500-row window a KS test needs a gap
    D of about 1.36 / sqrt(45), 0.20, before correction, against 0.07 with 4,000
    reference rows; a chi-square on rare predicted classes has small expected counts.
    Small output shifts go unseen. On the simulated stream of
    ``tests/unit/test_monitoring.py`` (random forest, 500-row windows): a class mix
    moving from about 50 % to 75 % was found in 5 of 5 seeds with 336 held-out rows but
    2 of 5 with 50; a move to about 87 %, or rows crowding the decision boundary (lower
    confidences), was found in 5 of 5 with 50 rows. False alarms stay at the
    ``IAC_DRIFT_ALPHA`` level (none in 24 stable windows, where the training-rows
    reference alarmed on all 24).
  - **Fallback** (a calibration.json written before the outputs were stored, or no
    calibrator: a model without ``predict_proba``, a held-out set with a single
    outcome): the champion's outputs on its training batches, as before, with the bias
    above; the report says so (``output_reference == "training"`` and a line in
    ``problems``). It is fair for a model about as confident on training rows as on
    new ones (the default logistic regression; gradient boosting on a stationary
    simulated stream).
* **Estimated accuracy** (NannyML's confidence-based performance estimation, CBPE;
  nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html): the mean
  of the champion's calibrated top-class probabilities over the window, with an
  interval (:func:`ia_continu.monitoring.estimation.estimate_accuracy`; the calibrator is the one
  fitted on the champion's held-out rows when it was trained, ``calibration.json``).
  It holds under CBPE's assumptions only: **no concept drift** (P(y | x) unchanged
  since the reference), calibrated probabilities on the reference data, no shift into
  regions the reference never covered, enough rows. A drop caused by concept drift is
  invisible until labels land; an estimated drop may *warn*, never retrain.

Later cycles fill each report's realised accuracy once its labels have had time to
land (``IAC_LABEL_DELAY``; ``repository.fill_realised_accuracy``), so the estimate can
be checked against the truth.

:func:`monitor_serving` is pure; :func:`run_serving_monitor` does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from loguru import logger

from ia_continu.data.sources import Schema
from ia_continu.data.storage import repository
from ia_continu.data.storage.engine import get_engine
from ia_continu.loop import cycle
from ia_continu.loop.results import OutputReference, ServingSummary
from ia_continu.monitoring.data_drift import DataDriftReport, detect_data_drift
from ia_continu.settings import Settings
from ia_continu.training import registry

if TYPE_CHECKING:
    # Imported where used: scikit-learn's isotonic regression is a second of import that
    # a flow process pays only when the serving monitor runs.
    from ia_continu.monitoring.estimation import AccuracyEstimate, Calibrator

PREDICTION = "prediction"
PROBABILITY = "probability"
OUTPUTS = (PREDICTION, PROBABILITY)
TRAINING_REFERENCE_CAVEAT = (
    "prediction drift compares with the champion's outputs on its own training rows (no "
    "held-out outputs stored with its calibrator): a model more confident on rows it was "
    "trained on (a random forest) shows a probability drift on every window"
)


@dataclass(frozen=True)
class ServingReport:
    """One look at the serving window (see the module docstring).

    Attributes:
        n_rows: served predictions in the window.
        labelled_rows: those with ground truth already joined.
        champion_rows: those served by the champion version (the estimate and the
            prediction drift are about these; all rows when no version is given).
        estimated_rows: champion rows with a probability (the estimate's n).
        window_start: ``served_at`` of the oldest row (UTC), None without rows.
        window_end: ``served_at`` of the newest row (UTC), None without rows.
        drift: the drift test of inputs and outputs (None: no reference);
            ``drift.n_reference`` counts the inputs' reference rows.
        data_drift: at least ``IAC_DRIFT_MIN_FEATURES`` inputs drifted.
        prediction_drift: the predicted class or its probability drifted.
        estimate: CBPE estimate of the champion's accuracy (None: see ``problems``).
        reference_accuracy: the calibrator's reference accuracy (0..1) or None.
        warn: the estimate is more than ``IAC_ESTIMATION_WARN_DROP`` below the reference
            accuracy and its interval's upper end is below it too.
        output_reference: where the outputs' reference comes from: ``held_out`` (the
            out-of-sample outputs stored with the calibrator) or ``training`` (the
            fallback: the champion on its training rows; see the module docstring).
        output_reference_rows: rows of that reference.
        problems: why a part could not be computed (no calibrator, no probability...),
            or was computed against a biased reference (the ``training`` fallback).
    """

    n_rows: int
    labelled_rows: int
    champion_rows: int
    estimated_rows: int
    window_start: datetime | None
    window_end: datetime | None
    drift: DataDriftReport | None
    data_drift: bool
    prediction_drift: bool
    estimate: AccuracyEstimate | None
    reference_accuracy: float | None
    warn: bool
    output_reference: OutputReference
    output_reference_rows: int
    problems: list[str] = field(default_factory=list)

    @property
    def label_coverage(self) -> float:
        """Share of the window's rows already labelled (0..1; 0 without rows)."""
        return self.labelled_rows / self.n_rows if self.n_rows else 0.0

    @property
    def drifted_features(self) -> list[str]:
        """Drifted columns: inputs, then ``prediction`` / ``probability``."""
        return list(self.drift.drifted_features) if self.drift else []

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times as ISO 8601 text)."""
        return {
            "n_rows": self.n_rows,
            "labelled_rows": self.labelled_rows,
            "label_coverage": self.label_coverage,
            "champion_rows": self.champion_rows,
            "estimated_rows": self.estimated_rows,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "drift": self.drift.to_dict() if self.drift else None,
            "data_drift": self.data_drift,
            "prediction_drift": self.prediction_drift,
            "drifted_features": self.drifted_features,
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "reference_accuracy": self.reference_accuracy,
            "warn": self.warn,
            "output_reference": self.output_reference,
            "output_reference_rows": self.output_reference_rows,
            "problems": list(self.problems),
        }


def _utc(value: Any) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def reference_outputs(champion_model: Any, reference: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The champion's outputs on ``reference`` rows, as the API would log them.

    :func:`monitor_serving` uses it on the champion's training rows only as a fallback
    (in-sample outputs: biased for a model that memorises its training rows; see the
    module docstring).

    Returns:
        Columns ``prediction`` (the predicted class as text, as ``served_predictions``
        stores it) and ``probability`` (probability of that class, 0..1, or NaN for a
        model without ``predict_proba``), one row per reference row, same index.
    """
    from ia_continu.monitoring.estimation import top_class_outputs

    features = reference[list(schema.features)]
    if hasattr(champion_model, "predict_proba"):
        outputs = top_class_outputs(champion_model.predict_proba(features), champion_model.classes_)
        return pd.DataFrame(
            {PREDICTION: list(outputs.prediction), PROBABILITY: list(outputs.probability)},
            index=reference.index,
        ).astype({PREDICTION: object, PROBABILITY: np.float64})
    labels = np.asarray(champion_model.predict(features))
    return pd.DataFrame(
        {PREDICTION: [str(v) for v in labels.tolist()], PROBABILITY: np.nan},
        index=reference.index,
    ).astype({PREDICTION: object, PROBABILITY: np.float64})


def monitor_serving(
    window: pd.DataFrame,
    reference: pd.DataFrame,
    champion_model: Any,
    calibrator: Calibrator | None,
    schema: Schema,
    settings: Settings,
    *,
    champion_version: int | None = None,
) -> ServingReport:
    """Serving drift and CBPE-estimated accuracy of the serving window (pure).

    The inputs are compared with ``reference``; the outputs with the calibrator's
    ``reference_outputs`` (out-of-sample, the champion's held-out rows) when it has
    them, else with the champion's outputs on ``reference`` (the fallback, biased for a
    model that memorises its training rows: it is named in ``problems``). The held-out
    reference is small (50 to a few hundred rows), so the output tests have less power
    than the input tests; see the module docstring.

    Args:
        window: served predictions, oldest first: the schema's feature columns,
            ``prediction`` (text), ``probability`` (top-class probability, 0..1, or
            null), ``label`` (text or null), ``served_at`` and ``model_version``
            (``serving_source.serving_window``). Must hold at least one row.
        reference: the champion's reference window (its training batches), with the
            schema's feature columns.
        champion_model: the champion (``predict``, and ``predict_proba`` for the
            probability drift).
        calibrator: CBPE's calibrator of the champion (None: no estimate, and the
            fallback reference for the outputs).
        schema: the stream's columns.
        settings: ``drift_alpha``, ``drift_min_wasserstein``, ``drift_min_psi``,
            ``drift_min_features`` and ``estimation_warn_drop`` are read.
        champion_version: when given, only rows served by this version count for the
            predicted-class drift and the estimate (the calibrator describes this
            model's probabilities, not an older version's); inputs are compared on all
            rows.

    Raises:
        ValueError: ``window`` is empty, or a column is missing (named), or a feature is
            named ``prediction`` / ``probability``.
    """
    if window.empty:
        raise ValueError("the serving window is empty: nothing to monitor")
    clash = set(schema.features) & set(OUTPUTS)
    if clash:
        raise ValueError(f"feature names {sorted(clash)} clash with the served output columns")
    missing = [c for c in (*schema.features, *OUTPUTS) if c not in window.columns]
    if missing:
        raise ValueError(f"serving window lacks columns {missing}")
    problems: list[str] = []
    ours = (
        (
            window["model_version"].astype("Int64") == champion_version
            if champion_version is not None and "model_version" in window.columns
            else pd.Series(True, index=window.index)
        )
        .fillna(False)
        .to_numpy(dtype=bool)
    )
    if not ours.any():
        problems.append(
            f"no row of the window was served by champion version {champion_version}: "
            "no predicted-class drift, no estimate"
        )
    probability = pd.to_numeric(window[PROBABILITY], errors="coerce").astype(float)
    served = pd.DataFrame(
        {
            PREDICTION: window[PREDICTION].where(ours & window[PREDICTION].notna().to_numpy()),
            PROBABILITY: probability.where(ours),
        },
        index=window.index,
    ).astype({PREDICTION: object})
    held_out = calibrator.reference_outputs if calibrator is not None else None
    output_reference: OutputReference
    if held_out is not None:
        outputs = pd.DataFrame(
            {PREDICTION: list(held_out.prediction), PROBABILITY: list(held_out.probability)}
        ).astype({PREDICTION: object, PROBABILITY: np.float64})
        output_reference = "held_out"
    else:
        outputs = reference_outputs(champion_model, reference, schema)
        output_reference = "training"
    numeric = list(schema.numeric)
    categorical = list(schema.categorical)
    if served[PREDICTION].notna().any():
        categorical.append(PREDICTION)
    if served[PROBABILITY].notna().any() and outputs[PROBABILITY].notna().any():
        numeric.append(PROBABILITY)
    # Inputs and outputs have references of different sizes: side by side, the shorter
    # is padded with NaN, which detect_data_drift drops per column before testing.
    drift = detect_data_drift(
        pd.concat(
            [
                reference[list(schema.features)].reset_index(drop=True),
                outputs.reset_index(drop=True),
            ],
            axis=1,
        ),
        pd.concat([window[list(schema.features)], served], axis=1),
        numeric=numeric,
        categorical=categorical,
        alpha=settings.drift_alpha,
        min_wasserstein=settings.drift_min_wasserstein,
        min_psi=settings.drift_min_psi,
        min_features=settings.drift_min_features,
    )
    drift = replace(drift, n_reference=len(reference))
    drifted_inputs = [f for f in drift.drifted_features if f not in OUTPUTS]
    prediction_drift = any(f in OUTPUTS for f in drift.drifted_features)

    estimate = None
    scored = served[PROBABILITY].dropna()
    if calibrator is None:
        problems.append(
            "no CBPE calibrator for the champion (a model without predict_proba, or a "
            "version trained before calibrators were logged): no estimate"
        )
    elif scored.empty:
        if ours.any():
            problems.append("no served probability in the window: no estimate")
    else:
        from ia_continu.monitoring.estimation import estimate_accuracy

        estimate = estimate_accuracy(calibrator, scored.to_numpy(dtype=np.float64))
    reference_accuracy = calibrator.reference_accuracy if calibrator is not None else None
    warn = bool(
        estimate is not None
        and reference_accuracy is not None
        and estimate.estimate < reference_accuracy - settings.estimation_warn_drop
        and estimate.upper < reference_accuracy
    )
    compared_outputs = PREDICTION in categorical or PROBABILITY in numeric
    if output_reference == "training" and compared_outputs:
        problems.append(TRAINING_REFERENCE_CAVEAT)
    served_at = window["served_at"] if "served_at" in window.columns else pd.Series(dtype=object)
    labelled = int(window["label"].notna().sum()) if "label" in window.columns else 0
    return ServingReport(
        n_rows=len(window),
        labelled_rows=labelled,
        champion_rows=int(ours.sum()),
        estimated_rows=len(scored),
        window_start=_utc(served_at.min()) if len(served_at) else None,
        window_end=_utc(served_at.max()) if len(served_at) else None,
        drift=drift,
        data_drift=len(drifted_inputs) >= settings.drift_min_features,
        prediction_drift=prediction_drift,
        estimate=estimate,
        reference_accuracy=reference_accuracy,
        warn=warn,
        output_reference=output_reference,
        output_reference_rows=len(outputs),
        problems=problems,
    )


def run_serving_monitor(settings: Settings, now: datetime | None = None) -> ServingSummary:
    """Monitor the serving window, store a ``serving_reports`` row, fill realised accuracies
    (I/O: database, MLflow).

    First the realised accuracy of earlier reports whose window is older than
    ``IAC_LABEL_DELAY`` is filled (``repository.fill_realised_accuracy``). Then, with a
    champion that loads and a non-empty window, :func:`monitor_serving` runs against the
    champion's training batches (inputs) and its calibrator
    (``registry.load_calibrator``; its held-out outputs are the outputs' reference) and
    the report is stored. Without a champion, with a champion that cannot be loaded or
    without a training lineage, or with an empty window, nothing is stored and the
    summary says why.

    Returns:
        The :class:`ServingSummary` of this look (its ``status`` says whether a report
        was stored), with the newest realised accuracy.

    Raises:
        sqlalchemy.exc.OperationalError, mlflow.exceptions.MlflowException, OSError:
            the database or the registry is unreachable (transient: the task retries).
    """
    from ia_continu.data import serving_source  # only serving mode needs it

    engine = get_engine(settings.resolved_database_url)
    stream = serving_source.stream(settings)
    source, schema = stream.name, stream.schema
    summary = ServingSummary(
        source=source,
        realised_filled=repository.fill_realised_accuracy(engine, settings.label_delay, now),
    )
    realised = repository.serving_reports(engine, 1, source=source, realised_only=True)
    if realised:
        summary = summary.model_copy(
            update={
                "realised_accuracy": realised[0]["realised_accuracy"],
                "realised_rows": realised[0]["realised_rows"],
                "realised_estimate": realised[0]["estimated_accuracy"],
                "realised_report_id": realised[0]["id"],
            }
        )
    mlflow_client = cycle.registry_client(settings)
    champion = registry.get_alias(mlflow_client, settings.registered_model_name)
    if champion is None:
        return summary.model_copy(
            update={"status": "no_champion", "reason": "no champion yet: nothing served"}
        )
    summary = summary.model_copy(update={"champion_version": champion.version})
    model, problem = cycle.load_champion_model(settings, champion)
    if model is None or not champion.training_batch_ids:
        why = problem or f"champion version {champion.version} has no training lineage"
        return summary.model_copy(update={"status": "no_reference", "reason": why})
    window = serving_source.serving_window(settings, engine, now=now)
    if window.empty:
        return summary.model_copy(
            update={"status": "no_window", "reason": "no served prediction yet"}
        )
    reference = repository.load_frame(engine, champion.training_batch_ids)
    calibrator = registry.load_calibrator(mlflow_client, champion)
    report = monitor_serving(
        window,
        reference,
        model,
        calibrator,
        schema,
        settings,
        champion_version=champion.version,
    )
    if report.window_start is None or report.window_end is None:
        raise ValueError("serving window without served_at times")
    previous = repository.serving_reports(engine, 1, source=source)
    before = previous[0] if previous else None
    same_champion = before is not None and before["champion_version"] == champion.version
    new_kinds = [
        kind
        for kind, on in (
            ("data_drift", report.data_drift),
            ("prediction_drift", report.prediction_drift),
        )
        if on and not (same_champion and before is not None and before[kind])
    ]
    # Warn on a change of state, not on every 30 s cycle of a lasting drop.
    warn_new = report.warn and not (same_champion and before and before["report"].get("warn"))
    estimate = report.estimate
    stored = {
        **report.to_dict(),
        "source": source,
        "champion_version": champion.version,
        "serving_drift_new": new_kinds,
    }
    report_id = repository.save_serving_report(
        engine,
        source=source,
        champion_version=champion.version,
        window_start=report.window_start,
        window_end=report.window_end,
        n_rows=report.n_rows,
        labelled_rows=report.labelled_rows,
        estimated_accuracy=estimate.estimate if estimate else None,
        estimated_lower=estimate.lower if estimate else None,
        estimated_upper=estimate.upper if estimate else None,
        reference_accuracy=report.reference_accuracy,
        data_drift=report.data_drift,
        prediction_drift=report.prediction_drift,
        report=stored,
    )
    if report.warn and estimate is not None:
        logger.warning(
            "estimated accuracy {:.3f} [{:.3f}, {:.3f}] below reference {:.3f} (no labels yet)",
            estimate.estimate,
            estimate.lower,
            estimate.upper,
            report.reference_accuracy,
        )
    return summary.model_copy(
        update={
            "status": "reported",
            "stored": True,
            "report_id": report_id,
            "reason": "; ".join(report.problems) or "serving window monitored",
            "n_rows": report.n_rows,
            "labelled_rows": report.labelled_rows,
            "label_coverage": report.label_coverage,
            "window_start": report.window_start,
            "window_end": report.window_end,
            "data_drift": report.data_drift,
            "prediction_drift": report.prediction_drift,
            "drifted_features": report.drifted_features,
            "serving_drift_new": bool(new_kinds),
            "estimated_accuracy": estimate.estimate if estimate else None,
            "estimated_lower": estimate.lower if estimate else None,
            "estimated_upper": estimate.upper if estimate else None,
            "reference_accuracy": report.reference_accuracy,
            "warn": bool(report.warn),
            "warn_new": bool(warn_new),
            "output_reference": report.output_reference,
            "problems": list(report.problems),
        }
    )
