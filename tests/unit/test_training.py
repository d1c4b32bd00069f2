"""Challenger training: pipeline construction, fit guards, accuracy, hold-out split."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from ia_continu.data.sources import Schema, SyntheticSource
from ia_continu.settings import EstimatorName
from ia_continu.training.trainer import (
    DEFAULT_PARAMS,
    ESTIMATORS,
    accuracy,
    build_pipeline,
    split_holdout,
    train,
)

MIXED = Schema(features=("x1", "x2", "colour"), categorical=("colour",), target="label")
NUMERIC_ONLY = Schema(features=("x1", "x2"), categorical=(), target="label")
CATEGORICAL_ONLY = Schema(features=("colour",), categorical=("colour",), target="label")


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """One OpenMP/BLAS thread: on an oversubscribed host (CI, parallel sessions) OpenMP's
    spin-waiting makes a 300-row HistGradientBoosting fit take seconds instead of 0.1 s."""
    with threadpool_limits(limits=1):
        yield


def _mixed_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Label "UP" when x1 + x2 > 0, except that colour "red" always means "UP"."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    colour = np.array(["red", "green", "blue"], dtype=object)[rng.integers(0, 3, n)]
    label = np.where((x1 + x2 > 0) | (colour == "red"), "UP", "DOWN")
    return pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "label": label})


class ConstantModel:
    """Anything with ``predict`` is a model for :func:`accuracy`."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full(len(frame), self.value, dtype=object)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("logistic_regression", LogisticRegression),
        ("random_forest", RandomForestClassifier),
        ("hist_gradient_boosting", HistGradientBoostingClassifier),
    ],
)
def test_build_pipeline_for_each_estimator(name: EstimatorName, cls: type[BaseEstimator]) -> None:
    pipeline = build_pipeline(MIXED, name)
    assert isinstance(pipeline, Pipeline)
    assert [step for step, _ in pipeline.steps] == ["features", "model"]
    model: Any = pipeline.named_steps["model"]
    assert isinstance(model, cls)
    for key, value in DEFAULT_PARAMS[name].items():
        assert model.get_params()[key] == value
    features = pipeline.named_steps["features"]
    assert isinstance(features, ColumnTransformer)
    (num_name, scaler, num_cols), (cat_name, encoder, cat_cols) = features.transformers
    assert (num_name, num_cols) == ("numeric", ["x1", "x2"])
    assert (cat_name, cat_cols) == ("categorical", ["colour"])
    assert isinstance(scaler, StandardScaler)
    assert isinstance(encoder, OneHotEncoder)
    assert encoder.handle_unknown == "ignore"
    # It fits and predicts on mixed data, including a category never seen in training.
    frame = _mixed_frame()
    pipeline.fit(frame[list(MIXED.features)], frame["label"])
    unseen = frame[list(MIXED.features)].head(5).assign(colour="purple")
    assert set(pipeline.predict(unseen)) <= {"UP", "DOWN"}


def test_estimators_registry_matches_settings_names() -> None:
    assert set(ESTIMATORS) == set(DEFAULT_PARAMS) == set(get_args(EstimatorName))


def test_build_pipeline_numeric_only_and_categorical_only() -> None:
    numeric = build_pipeline(NUMERIC_ONLY).named_steps["features"].transformers
    assert [t[0] for t in numeric] == ["numeric"]
    categorical = build_pipeline(CATEGORICAL_ONLY).named_steps["features"].transformers
    assert [t[0] for t in categorical] == ["categorical"]


def test_build_pipeline_params_override_defaults() -> None:
    pipeline = build_pipeline(NUMERIC_ONLY, "logistic_regression", {"max_iter": 50, "C": 0.5})
    model = pipeline.named_steps["model"]
    assert (model.max_iter, model.C) == (50, 0.5)
    forest = build_pipeline(NUMERIC_ONLY, "random_forest", {"n_estimators": 7})
    assert forest.named_steps["model"].n_estimators == 7
    assert forest.named_steps["model"].random_state == 0  # other defaults kept


def test_build_pipeline_unknown_estimator_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"^IAC_ESTIMATOR: unknown estimator 'svm'"):
        build_pipeline(MIXED, "svm")  # type: ignore[arg-type]


def test_build_pipeline_bad_params_name_the_setting() -> None:
    with pytest.raises(ValueError, match=r"^IAC_ESTIMATOR_PARAMS: .*not_a_param"):
        build_pipeline(MIXED, "random_forest", {"not_a_param": 1})


def test_train_fits_a_pipeline() -> None:
    frame = _mixed_frame(400)
    model = train(frame, MIXED)
    assert isinstance(model, Pipeline)
    assert accuracy(model, _mixed_frame(400, seed=1), MIXED) > 0.85


def test_train_uses_the_named_estimator() -> None:
    model = train(_mixed_frame(), MIXED, "random_forest", {"n_estimators": 5})
    assert isinstance(model.named_steps["model"], RandomForestClassifier)
    assert model.named_steps["model"].n_estimators == 5


def test_train_rejects_a_single_class() -> None:
    frame = _mixed_frame().assign(label="UP")
    with pytest.raises(ValueError, match="single class.*'UP'"):
        train(frame, MIXED)


def test_train_rejects_an_empty_window() -> None:
    with pytest.raises(ValueError, match="empty"):
        train(_mixed_frame().iloc[:0], MIXED)


def test_train_on_synthetic_batches_learns_the_rule() -> None:
    source = SyntheticSource(mode="stable", batch_size=500, label_noise=0.0)
    model = train(source.batch(0), source.schema)
    assert accuracy(model, source.batch(1), source.schema) > 0.97


def test_accuracy_is_the_share_of_correct_predictions() -> None:
    frame = pd.DataFrame({"x1": [0.0] * 4, "x2": [0.0] * 4, "label": ["UP", "UP", "UP", "DOWN"]})
    assert accuracy(ConstantModel("UP"), frame, NUMERIC_ONLY) == 0.75
    assert accuracy(ConstantModel("DOWN"), frame, NUMERIC_ONLY) == 0.25
    assert accuracy(ConstantModel("FLAT"), frame, NUMERIC_ONLY) == 0.0


def test_accuracy_compares_labels_as_strings() -> None:
    frame = pd.DataFrame({"x1": [0.0, 0.0], "x2": [0.0, 0.0], "label": ["1", "0"]})
    assert accuracy(ConstantModel(1), frame, NUMERIC_ONLY) == 0.5
    ints = frame.assign(label=[1, 0])
    assert accuracy(ConstantModel("1"), ints, NUMERIC_ONLY) == 0.5


def test_accuracy_on_empty_frame_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        accuracy(ConstantModel("UP"), _mixed_frame().iloc[:0], MIXED)


def _window(sizes: list[int]) -> pd.DataFrame:
    ids = np.repeat(np.arange(10, 10 + len(sizes)), sizes)
    return pd.DataFrame({"x": np.arange(len(ids), dtype=float), "batch_id": ids})


def test_split_holdout_holds_out_the_newest_batch() -> None:
    frame = _window([4, 4, 3])
    train_rows, holdout = split_holdout(frame)
    assert list(train_rows["batch_id"].unique()) == [10, 11]
    assert list(holdout["batch_id"].unique()) == [12]
    assert len(train_rows) == 8
    assert len(holdout) == 3
    assert list(holdout["x"]) == [8.0, 9.0, 10.0]


def test_split_holdout_two_batches() -> None:
    train_rows, holdout = split_holdout(_window([5, 2]))
    assert (len(train_rows), len(holdout)) == (5, 2)


def test_split_holdout_single_batch_holds_out_the_last_quarter() -> None:
    frame = _window([10])
    train_rows, holdout = split_holdout(frame)
    assert list(train_rows["x"]) == [float(i) for i in range(7)]  # int(10 * 0.75) == 7
    assert list(holdout["x"]) == [7.0, 8.0, 9.0]
    train_half, holdout_half = split_holdout(frame, min_fraction=0.5)
    assert (len(train_half), len(holdout_half)) == (5, 5)


def test_split_holdout_custom_batch_column() -> None:
    frame = _window([2, 2]).rename(columns={"batch_id": "b"})
    train_rows, holdout = split_holdout(frame, batch_col="b")
    assert list(holdout["b"]) == [11, 11]
    assert len(train_rows) == 2
