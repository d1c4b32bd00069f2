"""CBPE (``ia_continu.monitoring.estimation``) on simulated data where the truth is known.

The world: two features ~ N(0, I), P(y=1 | x) = sigmoid(3 x0 - 2 x1), a logistic
regression champion trained on it (so calibrated by construction), a calibrator fitted
on fresh reference rows. A covariate shift squeezes the rows towards the decision
boundary (P(x) changes, P(y | x) does not): accuracy falls and CBPE must see it. A
concept drift flips the labels of half the space (P(y | x) changes, P(x) does not):
accuracy falls and CBPE, by its assumption, cannot see it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bench.cbpe import Variant, run_variant, summarize, synthetic_covariate_stream, tenures
from ia_continu.monitoring.estimation import (
    AccuracyEstimate,
    Calibrator,
    ReferenceOutputs,
    calibrator_from_dict,
    calibrator_to_dict,
    estimate_accuracy,
    fit_calibrator,
    top_class_outputs,
    top_class_probability,
)

WEIGHTS = np.array([3.0, -2.0])
N = 4000
# Isotonic calibration is the estimate's main error: with 4,000 reference rows, few of
# them near the boundary, CBPE missed a squeezed window by up to 3.5 points over 8 seeds.
N_REFERENCE = 20_000


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def _draw(rng: np.random.Generator, n: int, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    x = spread * rng.standard_normal((n, 2))
    y = (rng.random(n) < _sigmoid(x @ WEIGHTS)).astype(int)
    return x, y


def _world(seed: int = 7) -> tuple[LogisticRegression, Calibrator, np.random.Generator]:
    """Champion trained on N rows, calibrator on N_REFERENCE other (reference) rows."""
    rng = np.random.default_rng(seed)
    x_train, y_train = _draw(rng, N)
    model = LogisticRegression().fit(x_train, y_train)
    x_ref, y_ref = _draw(rng, N_REFERENCE)
    calibrator = fit_calibrator(model.predict_proba(x_ref), model.predict(x_ref) == y_ref)
    return model, calibrator, rng


# --------------------------------------------------------------------------------------
# What CBPE sees and what it cannot
# --------------------------------------------------------------------------------------


def test_covariate_shift_is_estimated_and_beats_the_naive_estimate() -> None:
    model, calibrator, rng = _world()
    x, y = _draw(rng, 5000, spread=0.3)  # rows crowd the boundary; P(y | x) unchanged
    realised = float(np.mean(model.predict(x) == y))
    estimate = estimate_accuracy(calibrator, model.predict_proba(x))

    assert calibrator.reference_accuracy - realised > 0.1  # a real drop
    assert abs(estimate.estimate - realised) < 0.03
    assert abs(estimate.estimate - realised) < abs(calibrator.reference_accuracy - realised) / 4
    assert estimate.estimated_change < -0.1


def test_multiclass_with_string_labels() -> None:
    rng = np.random.default_rng(3)
    weights = np.array([[2.5, 0.0, -2.5], [0.0, 2.5, -1.0]])
    names = np.array(["low", "mid", "high"])

    def draw(n: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
        x = spread * rng.standard_normal((n, 2))
        logits = x @ weights
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        k = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)
        return x, names[k]

    model = LogisticRegression().fit(*draw(N, 1.0))
    x_ref, y_ref = draw(N_REFERENCE, 1.0)
    calibrator = fit_calibrator(model.predict_proba(x_ref), model.predict(x_ref) == y_ref)
    x, y = draw(5000, 0.3)
    realised = float(np.mean(model.predict(x) == y))
    estimate = estimate_accuracy(calibrator, model.predict_proba(x))

    assert calibrator.reference_accuracy - realised > 0.1
    assert abs(estimate.estimate - realised) < 0.03


def test_concept_drift_goes_unseen() -> None:
    """CBPE assumes P(y | x) is unchanged: flipping labels in half the space halves the
    accuracy, yet the estimate stays at the reference accuracy (the documented limit)."""
    model, calibrator, rng = _world()
    x, y = _draw(rng, 5000)  # same P(x) as the reference
    y = np.where(x[:, 0] > 0, 1 - y, y)  # concept drift: the rule flips for x0 > 0
    realised = float(np.mean(model.predict(x) == y))
    estimate = estimate_accuracy(calibrator, model.predict_proba(x))

    assert abs(estimate.estimate - calibrator.reference_accuracy) < 0.02
    assert realised < estimate.lower - 0.2


@pytest.mark.parametrize(("confidence", "low", "high"), [(0.95, 0.90, 0.99), (0.8, 0.74, 0.86)])
def test_interval_coverage_matches_nominal_on_calibrated_data(
    confidence: float, low: float, high: float
) -> None:
    """500 windows of 336 rows whose confidences are calibrated (and shifted towards low
    confidence from the reference's): the realised accuracy falls in the interval about
    as often as promised."""
    rng = np.random.default_rng(0)
    conf_ref = rng.uniform(0.5, 1.0, 20_000)
    calibrator = fit_calibrator(conf_ref, rng.random(conf_ref.size) < conf_ref)
    hits = 0
    for seed in range(500):
        r = np.random.default_rng(seed + 1)
        conf = 0.5 + 0.5 * r.beta(2.0, 3.0, 336)
        realised = float(np.mean(r.random(conf.size) < conf))
        hits += estimate_accuracy(calibrator, conf, confidence=confidence).contains(realised)
    assert low <= hits / 500 <= high


def test_calibration_fixes_an_over_confident_model() -> None:
    rng = np.random.default_rng(11)

    def draw(n: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        truth = rng.uniform(lo, hi, n)  # P(prediction is right)
        logit = np.log(truth / (1.0 - truth))
        score = _sigmoid(3.0 * logit)  # what the model says: far too sure
        return np.column_stack([score, 1.0 - score]), rng.random(n) < truth

    calibrator = fit_calibrator(*draw(N, 0.55, 0.95))
    proba, right = draw(5000, 0.5, 0.8)
    realised = float(right.mean())
    raw = float(top_class_probability(proba).mean())
    estimate = estimate_accuracy(calibrator, proba)

    assert raw - realised > 0.1
    assert abs(estimate.estimate - realised) < 0.02


# --------------------------------------------------------------------------------------
# Shapes, bounds and the result
# --------------------------------------------------------------------------------------


def test_top_class_probability_shapes() -> None:
    assert top_class_probability([[0.2, 0.8], [0.6, 0.4]]).tolist() == [0.8, 0.6]
    assert top_class_probability([[0.1, 0.3, 0.6]]).tolist() == [0.6]
    assert top_class_probability([0.7, 0.9]).tolist() == [0.7, 0.9]


def test_calibrator_is_monotone_and_bounded() -> None:
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.5, 1.0, 2000)
    calibrator = fit_calibrator(conf, rng.random(conf.size) < conf)
    grid = np.linspace(0.0, 1.0, 101)  # beyond the fitted range too: clipped
    out = calibrator.calibrate(grid)
    assert np.all(np.diff(out) >= 0.0)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert calibrator.n_reference == 2000


def test_bool_and_01_outcomes_fit_the_same_map() -> None:
    conf = np.array([0.55, 0.6, 0.7, 0.8, 0.9, 0.95])
    right = np.array([False, True, False, True, True, True])
    a = fit_calibrator(conf, right).calibrate(conf)
    b = fit_calibrator(conf, right.astype(int)).calibrate(conf)
    np.testing.assert_allclose(a, b)


def test_sure_window_gives_a_degenerate_interval_inside_0_1() -> None:
    calibrator = fit_calibrator([0.5, 0.5, 1.0, 1.0], [0, 1, 1, 1])
    estimate = estimate_accuracy(calibrator, np.ones(10))
    assert estimate.estimate == 1.0
    assert estimate.std_error == 0.0
    assert estimate.lower == estimate.upper == 1.0


def test_interval_is_clipped_to_0_1() -> None:
    calibrator = fit_calibrator([0.5, 0.9, 0.99, 1.0], [0, 1, 1, 1])
    estimate = estimate_accuracy(calibrator, [0.99, 0.99, 0.5], confidence=0.999)
    assert 0.0 <= estimate.lower <= estimate.estimate <= estimate.upper <= 1.0


def test_to_dict_is_json_ready() -> None:
    model, calibrator, rng = _world()
    x, _ = _draw(rng, 100)
    estimate = estimate_accuracy(calibrator, model.predict_proba(x), confidence=0.9)
    out = json.loads(json.dumps(estimate.to_dict()))
    assert set(out) == {
        "estimate",
        "lower",
        "upper",
        "std_error",
        "n",
        "confidence",
        "reference_accuracy",
        "estimated_change",
    }
    assert out["n"] == 100 and out["confidence"] == 0.9
    assert out["lower"] <= out["estimate"] <= out["upper"]
    assert isinstance(estimate, AccuracyEstimate)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------

GOOD_P = [0.6, 0.9, 0.7]
GOOD_C = [0, 1, 1]


@pytest.mark.parametrize(
    ("probabilities", "correct", "match"),
    [
        ([], [], "empty"),
        (np.empty((0, 2)), [], "empty"),
        (GOOD_P, [0, 1], "shape"),
        (GOOD_P, [[0, 1, 1]], "shape"),
        ([0.6, 1.2, 0.7], GOOD_C, r"\[0, 1\]"),
        ([0.6, -0.1, 0.7], GOOD_C, r"\[0, 1\]"),
        ([0.6, float("nan"), 0.7], GOOD_C, "NaN"),
        (np.full((3, 2, 2), 0.5), GOOD_C, "dimensions"),
        ([[0.6], [0.9], [0.7]], GOOD_C, "2 columns"),
        ([[0.6, 0.4], [0.9, 0.2], [0.7, 0.3]], GOOD_C, "row 1 sums to 1.1"),
        (GOOD_P, [0, 2, 1], "0/1"),
        (GOOD_P, ["no", "yes", "yes"], "0/1"),
        (GOOD_P, [1, 1, 1], "all 3 reference predictions are right"),
        (GOOD_P, [False, False, False], "are wrong"),
    ],
)
def test_fit_calibrator_errors(probabilities: Any, correct: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_calibrator(probabilities, correct)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1])
def test_estimate_rejects_a_bad_confidence(confidence: float) -> None:
    calibrator = fit_calibrator(GOOD_P, GOOD_C)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        estimate_accuracy(calibrator, GOOD_P, confidence=confidence)


@pytest.mark.parametrize(
    ("probabilities", "match"),
    [([], "empty"), ([[0.5, 0.7]], "sum to 1"), ([1.1], r"\[0, 1\]")],
)
def test_estimate_rejects_bad_probabilities(probabilities: Any, match: str) -> None:
    calibrator = fit_calibrator(GOOD_P, GOOD_C)
    with pytest.raises(ValueError, match=match):
        estimate_accuracy(calibrator, probabilities)


# --------------------------------------------------------------------------------------
# Reference outputs: the out-of-sample outputs kept with the calibrator
# --------------------------------------------------------------------------------------


def test_top_class_outputs_match_predict_and_serve_labels_as_text() -> None:
    model, _, rng = _world()
    x, _ = _draw(rng, 300)
    outputs = top_class_outputs(model.predict_proba(x), model.classes_)
    assert list(outputs.prediction) == [str(int(v)) for v in model.predict(x)]
    assert np.array_equal(outputs.probability, model.predict_proba(x).max(axis=1))
    assert all(type(p) is str for p in outputs.prediction)
    assert all(type(p) is float for p in outputs.probability)
    # Text labels, three classes, and a first-wins tie as scikit-learn's predict.
    three = top_class_outputs([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]], np.array(["a", "b", "c"]))
    assert three == ReferenceOutputs(prediction=("b", "a"), probability=(0.5, 0.4))
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        top_class_outputs([[0.5, 0.5]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="sum to 1"):
        top_class_outputs([[0.5, 0.7]], [0, 1])


def test_reference_outputs_round_trip_with_the_calibrator() -> None:
    model, _, rng = _world()
    x, y = _draw(rng, 400)
    proba = model.predict_proba(x)
    outputs = top_class_outputs(proba, model.classes_)
    calibrator = fit_calibrator(proba, model.predict(x) == y, reference_outputs=outputs)
    assert calibrator.reference_outputs is outputs
    data = json.loads(json.dumps(calibrator_to_dict(calibrator)))
    assert data["reference_outputs"] == {
        "prediction": list(outputs.prediction),
        "probability": list(outputs.probability),
    }
    back = calibrator_from_dict(data)
    assert back.reference_outputs == outputs  # bit for bit through JSON
    assert back.n_reference == len(outputs) == 400
    # Without outputs: the key is absent (older readers see the old format) and a file
    # without it reads back with none.
    bare = calibrator_to_dict(fit_calibrator(proba, model.predict(x) == y))
    assert "reference_outputs" not in bare
    assert calibrator_from_dict(bare).reference_outputs is None
    with pytest.raises(ValueError, match="reference_outputs must hold 400 rows"):
        fit_calibrator(
            proba,
            model.predict(x) == y,
            reference_outputs=ReferenceOutputs(("1",), (0.9,)),
        )


@pytest.mark.parametrize(
    ("outputs", "match"),
    [
        ([1, 2], "must be a JSON object"),
        ({"prediction": ["1", "0"]}, "missing field 'reference_outputs.probability'"),
        ({"prediction": [1, 0], "probability": [0.9, 0.8]}, "list of texts"),
        ({"prediction": ["1", "0"], "probability": ["0.9", 0.8]}, "list of numbers"),
        ({"prediction": ["1", "0"], "probability": [True, 0.8]}, "list of numbers"),
        ({"prediction": ["1", "0"], "probability": [0.9]}, "one length"),
        ({"prediction": [], "probability": []}, "non-empty"),
        ({"prediction": ["1", "0"], "probability": [0.9, 1.5]}, r"\[0, 1\]"),
        ({"prediction": ["1", "0", "1"], "probability": [0.9, 0.8, 0.7]}, "n_reference says 2"),
    ],
)
def test_malformed_reference_outputs_are_refused_naming_the_field(outputs: Any, match: str) -> None:
    data = calibrator_to_dict(fit_calibrator([0.6, 0.9], [0, 1]))
    good = {**data, "reference_outputs": {"prediction": ["1", "0"], "probability": [0.6, 0.9]}}
    assert calibrator_from_dict(good).reference_outputs == ReferenceOutputs(("1", "0"), (0.6, 0.9))
    with pytest.raises(ValueError, match=match):
        calibrator_from_dict({**data, "reference_outputs": outputs})


# --------------------------------------------------------------------------------------
# The benchmark's protocol (bench/cbpe.py)
# --------------------------------------------------------------------------------------


def test_tenures_cover_every_window_once() -> None:
    static = tenures(20, Variant("static", 4, None))
    assert [(t.train, t.reference, t.windows) for t in static] == [(range(4), 4, range(5, 20))]
    rolling = tenures(30, Variant("retrain_8", 8, 8))
    assert [(t.train, t.reference) for t in rolling] == [
        (range(8), 8),
        (range(8, 16), 16),
        (range(16, 24), 24),
    ]
    windows = [b for t in rolling for b in t.windows]
    assert windows == list(range(9, 30))
    assert all(t.reference not in t.train and t.reference < t.windows.start for t in rolling)
    assert tenures(5, Variant("static", 4, None)) == []


def test_bench_control_cbpe_beats_naive_under_covariate_shift_only() -> None:
    schema, batches = synthetic_covariate_stream(n_batches=30)
    rows = run_variant("control", schema, batches, "logistic_regression", Variant("s", 4, None))
    summary = summarize(rows)
    assert summary["windows"] == 25
    assert summary["mae_cbpe"] < summary["mae_naive"] / 2
    assert summary["corr_cbpe_realised"] > 0.8
