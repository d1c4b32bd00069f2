"""Estimated accuracy before labels arrive: confidence-based performance estimation (CBPE).

A champion that outputs class probabilities tells, row by row, how sure it is of its
predicted class. Once those confidences are *calibrated* (among rows given confidence
0.8, 80 % are predicted right), their mean over an unlabelled window is the accuracy the
champion is expected to reach there: the sum of P(prediction j is right) over n rows,
divided by n. This is NannyML's CBPE for accuracy, which for binary and multi-class
models alike is the mean of the (calibrated) probabilities of the predicted classes
(NannyML docs ``how_it_works/performance_estimation``, "Confidence-based Performance
Estimation"; nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html).

**Calibration.** Fitted on reference data, i.e. labelled rows the champion was *not*
trained on (its validation rows): NannyML warns that a calibrator fitted on training
rows is biased. We regress "the predicted class is right" (0/1) on the probability of
the predicted class (the row's maximum class probability) with scikit-learn's
``IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)``: a monotone, non-parametric
map (Zadrozny & Elkan 2002, "Transforming classifier scores into accurate multiclass
probability estimates", KDD; NannyML's "Appendix: Probability calibration" uses isotonic
regression too). Two differences from NannyML, both on purpose:

* NannyML calibrates each class probability one-vs-rest, then renormalises, and only
  keeps the calibration when it lowers the expected calibration error on held-out folds
  of the reference data. For *accuracy* only the predicted class's probability matters,
  so we calibrate that one number directly ("confidence" or top-label calibration: Guo
  et al. 2017, "On calibration of modern neural networks", ICML; Gupta & Ramdas 2022,
  "Top-label calibration and multiclass-to-binary reductions", ICLR). One map serves
  binary and multi-class models alike, whatever the label type.
* We always calibrate. On an already calibrated model isotonic regression is close to
  the identity, but on few reference rows its steps are noisy: on 336 rows it cost a
  well-specified logistic regression about 1 point of error, while it cut a boosted
  model's error 2 to 5 times (``bench/cbpe.py``, synthetic control).

**Assumptions** (NannyML's "Assumptions and Limitations"); when one fails the estimate
is wrong and nothing here can tell:

1. **No concept drift**: P(y | x) is the same in the current window as in the reference
   data. CBPE estimates the effect of a covariate shift (data drift: P(x) changes) only.
   If the labelling rule changes, the champion's confidences do not, and neither does
   the estimate: a drop caused by concept drift is invisible until labels land.
2. **Calibrated probabilities on the reference data**, i.e. the calibrator fitted there
   still describes the champion's confidences.
3. **No shift into regions the reference data never covered** (the calibration there is
   an extrapolation).
4. **Enough rows**: the estimate is an expectation; the realised accuracy of n rows
   scatters around it (see :class:`AccuracyEstimate`).

No label is read here: the estimate may *warn* of a drop, but a retrain needs labels.

**Reference outputs.** The calibrator also keeps the model's predicted classes and
confidences on its reference rows (:class:`ReferenceOutputs`): being out-of-sample, they
are what served outputs should look like while nothing drifts, the reference for
output (prediction) drift in :mod:`ia_continu.monitoring.serving_monitor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.isotonic import IsotonicRegression

DEFAULT_CONFIDENCE = 0.95
ROW_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ReferenceOutputs:
    """A model's outputs on rows it was not trained on: the reference for output drift.

    The rows are the ones its :class:`Calibrator` is fitted on (the gated model's
    held-out rows), so their predicted classes and confidences are out-of-sample, like
    those of served rows. A model's outputs on its own training rows are not: a model
    that memorises them (a random forest) is far more confident there than on any new
    row, and a comparison with them flags a probability drift on every window.

    Attributes:
        prediction: predicted class per row, as text (``str`` of the label, as
            ``served_predictions`` stores it), shape (n,), n >= 1.
        probability: the model's probability of that class per row, 0..1, shape (n,).
    """

    prediction: tuple[str, ...]
    probability: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.prediction)

    def to_dict(self) -> dict[str, list[Any]]:
        """JSON-ready form: ``{"prediction": [text, ...], "probability": [float, ...]}``."""
        return {"prediction": list(self.prediction), "probability": list(self.probability)}


def top_class_outputs(
    probabilities: ArrayLike, classes: Sequence[Any] | ArrayLike
) -> ReferenceOutputs:
    """Predicted class (as text) and its probability per row, as the API serves them.

    Args:
        probabilities: shape (n, k), a ``predict_proba`` output (rows summing to 1).
        classes: shape (k,), the model's ``classes_``, in ``predict_proba``'s column order.

    Returns:
        Per row, the class of highest probability (first on ties, as scikit-learn's
        ``predict``) as ``str`` and that probability.

    Raises:
        ValueError: as :func:`top_class_probability` for a 2-D input; ``probabilities``
            not 2-D, or its column count differing from the number of classes.
    """
    proba = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(classes, dtype=object)
    if proba.ndim != 2 or proba.shape[1] != labels.shape[0]:
        raise ValueError(
            f"probabilities must have shape (n, {labels.shape[0]}), one column per class; "
            f"got {proba.shape}"
        )
    top = top_class_probability(proba)
    best = proba.argmax(axis=1)
    # .item() turns numpy scalars into Python values: str(np.int64(1)) and str(1) agree,
    # but str(np.float32(0.1)) and str(0.1) need not.
    texts = tuple(str(v.item() if isinstance(v, np.generic) else v) for v in labels[best])
    return ReferenceOutputs(prediction=texts, probability=tuple(float(p) for p in top))


@dataclass(frozen=True)
class Calibrator:
    """Map from the champion's confidence in its predicted class to P(prediction is right).

    Built by :func:`fit_calibrator`; pass it to :func:`estimate_accuracy`.

    Attributes:
        isotonic: the fitted ``IsotonicRegression`` (confidence -> P(right), both 0..1).
        n_reference: reference rows it was fitted on.
        reference_accuracy: the champion's realised accuracy on those rows (0..1): the
            naive estimate "accuracy stays at its reference value".
        reference_outputs: the model's predicted classes and confidences on those same
            rows (out-of-sample), the reference for serving output drift
            (:mod:`ia_continu.monitoring.serving_monitor`); None for a calibrator written before they
            were stored.
    """

    isotonic: IsotonicRegression
    n_reference: int
    reference_accuracy: float
    reference_outputs: ReferenceOutputs | None = None

    def calibrate(self, probabilities: ArrayLike) -> NDArray[np.float64]:
        """P(prediction is right) per row, shape (n,), values in [0, 1].

        Args:
            probabilities: as for :func:`top_class_probability`.

        Raises:
            ValueError: as :func:`top_class_probability`.
        """
        confidence = top_class_probability(probabilities)
        calibrated = np.asarray(self.isotonic.predict(confidence), dtype=np.float64)
        return np.clip(calibrated, 0.0, 1.0)


@dataclass(frozen=True)
class AccuracyEstimate:
    """CBPE estimate of a window's accuracy, with an interval for the realised accuracy.

    If row j is right with probability p_j (the calibrated confidence), independently,
    the realised accuracy of the window, (1/n) * sum of Bernoulli(p_j), has mean
    ``estimate = mean(p_j)`` and variance ``sum p_j (1 - p_j) / n^2`` (a Poisson-binomial
    count divided by n). ``lower``/``upper`` are the normal interval ``estimate +/- z *
    std_error`` with ``z`` the two-sided ``confidence`` quantile, clipped to [0, 1]. This
    is the sampling part only: it ignores the calibrator's own error (a reference set of
    a few hundred rows adds a few points) and any failed assumption (concept drift), so
    it is a lower bound on the real uncertainty.

    Attributes:
        estimate: expected accuracy (0..1).
        lower: lower end of the interval (0..1).
        upper: upper end of the interval (0..1).
        std_error: standard deviation of the realised accuracy under the model (0..1).
        n: rows in the window.
        confidence: nominal coverage of the interval (0..1, exclusive).
        reference_accuracy: the calibrator's reference accuracy (0..1), so that
            ``estimate - reference_accuracy`` is the estimated change.
    """

    estimate: float
    lower: float
    upper: float
    std_error: float
    n: int
    confidence: float
    reference_accuracy: float

    @property
    def estimated_change(self) -> float:
        """Estimated accuracy minus the reference accuracy (-1..1; negative: a drop)."""
        return self.estimate - self.reference_accuracy

    def contains(self, accuracy: float) -> bool:
        """Whether a realised ``accuracy`` (0..1) lies in ``[lower, upper]``."""
        return self.lower <= accuracy <= self.upper

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (adds ``estimated_change``)."""
        return {**asdict(self), "estimated_change": self.estimated_change}


def top_class_probability(probabilities: ArrayLike) -> NDArray[np.float64]:
    """The model's probability of its predicted class, per row: shape (n,), in [0, 1].

    Args:
        probabilities: either shape (n, k), k >= 2, the class probabilities of a
            ``predict_proba`` (each row's maximum is taken, which is the predicted
            class's probability for scikit-learn classifiers), or shape (n,), already
            the probability of the predicted class. For a binary model that is
            ``max(p, 1 - p)``, not P(class 1).

    Raises:
        ValueError: no row, not 1-D or 2-D, fewer than 2 columns, a NaN, a value
            outside [0, 1], or (2-D) a row not summing to 1 (within 1e-3).
    """
    array = np.asarray(probabilities, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(
            f"probabilities must have shape (n,) or (n, k); got {array.ndim} dimensions"
        )
    if array.shape[0] == 0:
        raise ValueError("probabilities is empty: no row to estimate on")
    if array.ndim == 2 and array.shape[1] < 2:
        raise ValueError(f"class probabilities need >= 2 columns; got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError("probabilities contain NaN")
    if array.min() < 0.0 or array.max() > 1.0:
        raise ValueError(
            f"probabilities must lie in [0, 1]; got min {array.min():g}, max {array.max():g}"
        )
    if array.ndim == 2:
        sums = array.sum(axis=1)
        worst = int(np.argmax(np.abs(sums - 1.0)))
        # Loose: float32 outputs (ONNX) sum to 1 only to ~1e-7 per class.
        if abs(sums[worst] - 1.0) > ROW_SUM_TOLERANCE:
            raise ValueError(
                f"class probabilities must sum to 1 per row; row {worst} sums to {sums[worst]:g}"
            )
    return array.max(axis=1) if array.ndim == 2 else array


def fit_calibrator(
    probabilities: ArrayLike,
    correct: ArrayLike,
    *,
    reference_outputs: ReferenceOutputs | None = None,
) -> Calibrator:
    """Fit CBPE's calibrator on the champion's labelled reference rows.

    Isotonic (non-decreasing) regression of ``correct`` on the probability of the
    predicted class, ``IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)``
    (scikit-learn ``sklearn.isotonic``; NannyML docs, "Appendix: Probability
    calibration"). Use rows the champion was not trained on (e.g. its validation rows).

    Args:
        probabilities: shape (n, k) class probabilities or (n,) probability of the
            predicted class (see :func:`top_class_probability`).
        correct: shape (n,), whether the champion's prediction of each row is right
            (bool, or 0/1).
        reference_outputs: the champion's outputs on the same n rows
            (:func:`top_class_outputs`), kept with the calibrator as the out-of-sample
            reference for output drift.

    Returns:
        The fitted :class:`Calibrator`.

    Raises:
        ValueError: as :func:`top_class_probability`; ``correct`` or
            ``reference_outputs`` not of n rows, ``correct`` not 0/1; or every reference
            prediction right (or every one wrong). With a single outcome the isotonic fit
            is a constant (1.0 or 0.0): it would estimate that accuracy for every future
            window whatever the confidences, so no calibrator is returned; fit on more
            (or harder) reference rows.
    """
    confidence = top_class_probability(probabilities)
    outcome = np.asarray(correct)
    if outcome.shape != confidence.shape:
        raise ValueError(
            f"correct must have shape ({confidence.shape[0]},), one flag per row; "
            f"got {outcome.shape}"
        )
    if reference_outputs is not None and len(reference_outputs) != confidence.shape[0]:
        raise ValueError(
            f"reference_outputs must hold {confidence.shape[0]} rows, one per reference "
            f"row; got {len(reference_outputs)}"
        )
    if outcome.dtype != np.bool_:
        if not np.isin(outcome, (0, 1)).all():
            raise ValueError("correct must hold booleans or 0/1 values")
    right = outcome.astype(np.float64)
    if right.min() == right.max():
        which = "right" if right[0] == 1.0 else "wrong"
        raise ValueError(
            f"all {right.size} reference predictions are {which}: a calibrator needs both "
            "right and wrong predictions (a single outcome fits a constant)"
        )
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    isotonic.fit(confidence, right)
    return Calibrator(
        isotonic=isotonic,
        n_reference=int(right.size),
        reference_accuracy=float(right.mean()),
        reference_outputs=reference_outputs,
    )


def estimate_accuracy(
    calibrator: Calibrator,
    probabilities: ArrayLike,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> AccuracyEstimate:
    """CBPE: the champion's expected accuracy on an unlabelled window, with an interval.

    ``estimate`` is the mean of the calibrated confidences; the interval is the normal
    approximation to the realised accuracy's spread under independent Bernoulli(p_j)
    correctness (see :class:`AccuracyEstimate`; it ignores calibration error). Valid
    under CBPE's assumptions (module docstring): no concept drift, calibrated on
    reference data; it sees covariate shift only.

    Args:
        calibrator: from :func:`fit_calibrator` on the same champion.
        probabilities: the champion's outputs on the window, shape (n, k) or (n,) (see
            :func:`top_class_probability`).
        confidence: nominal coverage of the interval, strictly between 0 and 1.

    Raises:
        ValueError: ``confidence`` outside (0, 1), or bad ``probabilities`` (as
            :func:`top_class_probability`).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1; got {confidence}")
    p = calibrator.calibrate(probabilities)
    n = int(p.size)
    estimate = float(p.mean())
    std_error = float(np.sqrt(np.sum(p * (1.0 - p))) / n)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    return AccuracyEstimate(
        estimate=estimate,
        lower=max(0.0, estimate - z * std_error),
        upper=min(1.0, estimate + z * std_error),
        std_error=std_error,
        n=n,
        confidence=confidence,
        reference_accuracy=calibrator.reference_accuracy,
    )


CALIBRATOR_FORMAT = "ia_continu.cbpe.isotonic_top_class/1"


def calibrator_to_dict(calibrator: Calibrator) -> dict[str, Any]:
    """JSON-ready form of ``calibrator`` (no pickle): what :func:`calibrator_from_dict` reads.

    The fitted isotonic map is its breakpoints: ``x_thresholds`` (confidences, sorted) and
    ``y_thresholds`` (P(right) at each, 0..1), scikit-learn's ``X_thresholds_`` /
    ``y_thresholds_``, between which ``IsotonicRegression.predict`` interpolates linearly
    and outside which it clips (``out_of_bounds="clip"``). Floats are written as Python
    floats, whose JSON text reads back bit for bit.

    Returns:
        ``{"format", "x_thresholds", "y_thresholds", "increasing", "n_reference",
        "reference_accuracy"}``, plus ``"reference_outputs": {"prediction": [text, ...],
        "probability": [float, ...]}`` (:class:`ReferenceOutputs`) when the calibrator
        has them. The key is optional, so the format version is unchanged: a file
        without it still reads, and a reader that predates it ignores it.
    """
    isotonic = calibrator.isotonic
    data: dict[str, Any] = {
        "format": CALIBRATOR_FORMAT,
        "x_thresholds": [float(x) for x in isotonic.X_thresholds_],
        "y_thresholds": [float(y) for y in isotonic.y_thresholds_],
        "increasing": bool(isotonic.increasing_),
        "n_reference": int(calibrator.n_reference),
        "reference_accuracy": float(calibrator.reference_accuracy),
    }
    if calibrator.reference_outputs is not None:
        data["reference_outputs"] = calibrator.reference_outputs.to_dict()
    return data


def _reference_outputs_from_dict(data: Any) -> ReferenceOutputs:
    if not isinstance(data, dict):
        raise ValueError(
            f"calibration: reference_outputs must be a JSON object; got {type(data).__name__}"
        )
    try:
        prediction, probability = data["prediction"], data["probability"]
    except KeyError as exc:
        raise ValueError(f"calibration: missing field 'reference_outputs.{exc.args[0]}'") from None
    if not isinstance(prediction, list) or not all(isinstance(p, str) for p in prediction):
        raise ValueError("calibration: reference_outputs.prediction must be a list of texts")
    if not isinstance(probability, list) or not all(
        isinstance(p, int | float) and not isinstance(p, bool) for p in probability
    ):
        raise ValueError("calibration: reference_outputs.probability must be a list of numbers")
    if not prediction or len(prediction) != len(probability):
        raise ValueError(
            "calibration: reference_outputs.prediction and .probability must be non-empty "
            f"lists of one length; got {len(prediction)} and {len(probability)}"
        )
    values = np.asarray(probability, dtype=np.float64)
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise ValueError("calibration: reference_outputs.probability must lie in [0, 1]")
    return ReferenceOutputs(
        prediction=tuple(prediction), probability=tuple(float(p) for p in values)
    )


def calibrator_from_dict(data: Any) -> Calibrator:
    """Rebuild the :class:`Calibrator` written by :func:`calibrator_to_dict`.

    The ``IsotonicRegression`` is restored through scikit-learn's pickle protocol
    (``__setstate__``, which rebuilds the interpolation from the thresholds), so its
    predictions are identical to the original's.

    ``reference_outputs`` is optional (files written before it was stored have none:
    the calibrator's ``reference_outputs`` is then None).

    Raises:
        ValueError: ``data`` is not such a dict: wrong ``format``, a missing or malformed
            field (named), thresholds of different lengths, empty, not finite, not sorted,
            or P(right) outside [0, 1]; ``reference_outputs`` present but not texts and
            probabilities (0..1) of one length, ``n_reference`` rows.
    """
    if not isinstance(data, dict):
        raise ValueError(f"calibration must be a JSON object; got {type(data).__name__}")
    if data.get("format") != CALIBRATOR_FORMAT:
        raise ValueError(
            f"calibration format must be {CALIBRATOR_FORMAT!r}; got {data.get('format')!r}"
        )
    try:
        x = np.asarray(data["x_thresholds"], dtype=np.float64)
        y = np.asarray(data["y_thresholds"], dtype=np.float64)
        n_reference = int(data["n_reference"])
        reference_accuracy = float(data["reference_accuracy"])
        increasing = data["increasing"]
    except KeyError as exc:
        raise ValueError(f"calibration: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"calibration: malformed field ({exc})") from None
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(
            "calibration: x_thresholds and y_thresholds must be non-empty lists of one "
            f"length; got shapes {x.shape} and {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("calibration: thresholds must be finite numbers")
    if (np.diff(x) < 0).any():
        raise ValueError("calibration: x_thresholds must be sorted (non-decreasing)")
    if y.min() < 0.0 or y.max() > 1.0:
        raise ValueError("calibration: y_thresholds must lie in [0, 1]")
    if not isinstance(increasing, bool):
        raise ValueError("calibration: increasing must be true or false")
    if n_reference < 1 or not 0.0 <= reference_accuracy <= 1.0:
        raise ValueError(
            "calibration: n_reference must be >= 1 and reference_accuracy in [0, 1]; "
            f"got {n_reference} and {reference_accuracy}"
        )
    outputs = data.get("reference_outputs")
    reference_outputs = None if outputs is None else _reference_outputs_from_dict(outputs)
    if reference_outputs is not None and len(reference_outputs) != n_reference:
        raise ValueError(
            f"calibration: reference_outputs holds {len(reference_outputs)} rows, "
            f"n_reference says {n_reference}"
        )
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    state = isotonic.__getstate__()
    state.update(
        X_thresholds_=x,
        y_thresholds_=y,
        X_min_=float(x[0]),
        X_max_=float(x[-1]),
        increasing_=increasing,
        n_features_in_=1,
    )
    isotonic.__setstate__(state)
    return Calibrator(
        isotonic=isotonic,
        n_reference=n_reference,
        reference_accuracy=reference_accuracy,
        reference_outputs=reference_outputs,
    )
