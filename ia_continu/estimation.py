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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.isotonic import IsotonicRegression

DEFAULT_CONFIDENCE = 0.95
ROW_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Calibrator:
    """Map from the champion's confidence in its predicted class to P(prediction is right).

    Built by :func:`fit_calibrator`; pass it to :func:`estimate_accuracy`.

    Attributes:
        isotonic: the fitted ``IsotonicRegression`` (confidence -> P(right), both 0..1).
        n_reference: reference rows it was fitted on.
        reference_accuracy: the champion's realised accuracy on those rows (0..1): the
            naive estimate "accuracy stays at its reference value".
    """

    isotonic: IsotonicRegression
    n_reference: int
    reference_accuracy: float

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


def fit_calibrator(probabilities: ArrayLike, correct: ArrayLike) -> Calibrator:
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

    Returns:
        The fitted :class:`Calibrator`.

    Raises:
        ValueError: as :func:`top_class_probability`; ``correct`` not of shape (n,) or
            not 0/1; or every reference prediction right (or every one wrong). With a
            single outcome the isotonic fit is a constant (1.0 or 0.0): it would
            estimate that accuracy for every future window whatever the confidences,
            so no calibrator is returned; fit on more (or harder) reference rows.
    """
    confidence = top_class_probability(probabilities)
    outcome = np.asarray(correct)
    if outcome.shape != confidence.shape:
        raise ValueError(
            f"correct must have shape ({confidence.shape[0]},), one flag per row; "
            f"got {outcome.shape}"
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
        isotonic=isotonic, n_reference=int(right.size), reference_accuracy=float(right.mean())
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
