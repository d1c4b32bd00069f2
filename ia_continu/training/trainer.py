"""Challenger training and evaluation: a scikit-learn Pipeline built from settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ia_continu.data.sources import Schema
from ia_continu.settings import EstimatorName

ESTIMATORS: dict[str, type[ClassifierMixin]] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
}
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"max_iter": 1000},
    "random_forest": {"n_estimators": 100, "n_jobs": 1, "random_state": 0},
    "hist_gradient_boosting": {"random_state": 0},
}


def build_pipeline(
    schema: Schema,
    estimator: EstimatorName = "logistic_regression",
    params: dict[str, Any] | None = None,
) -> Pipeline:
    """StandardScaler on numeric features, one-hot on categorical ones, then the estimator.

    Raises:
        ValueError: unknown ``estimator`` or a parameter the estimator does not take
            (the message names ``IAC_ESTIMATOR`` / ``IAC_ESTIMATOR_PARAMS``).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"IAC_ESTIMATOR: unknown estimator {estimator!r}; one of {list(ESTIMATORS)}"
        )
    merged = {**DEFAULT_PARAMS[estimator], **(params or {})}
    try:
        model = ESTIMATORS[estimator](**merged)
    except TypeError as exc:
        raise ValueError(f"IAC_ESTIMATOR_PARAMS: {exc}") from exc
    transformers: list[tuple[str, Any, list[str]]] = []
    if schema.numeric:
        transformers.append(("numeric", StandardScaler(), list(schema.numeric)))
    if schema.categorical:
        transformers.append(
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(schema.categorical))
        )
    return Pipeline([("features", ColumnTransformer(transformers)), ("model", model)])


def train(
    frame: pd.DataFrame,
    schema: Schema,
    estimator: EstimatorName = "logistic_regression",
    params: dict[str, Any] | None = None,
) -> Pipeline:
    """Fit a fresh pipeline on ``frame`` (rows x features + target).

    Raises:
        ValueError: if ``frame`` is empty or holds a single class.
    """
    frame = frame[frame[schema.target].notna()]
    if frame.empty:
        raise ValueError("cannot train on an empty window (no labelled row)")
    y = frame[schema.target]
    if y.nunique() < 2:
        raise ValueError(f"training window holds a single class ({y.iloc[0]!r})")
    pipeline = build_pipeline(schema, estimator, params)
    pipeline.fit(frame[list(schema.features)], y)
    return pipeline


def correct_mask(model: Any, frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Per labelled row of ``frame``, whether ``model`` predicts its label (bool, shape (n,)).

    Labels are compared as strings, as the replay source stores them. Rows without a
    label are left out (so ``n`` is the number of labelled rows).
    """
    frame = frame[frame[schema.target].notna()]
    if frame.empty:
        return np.zeros(0, dtype=bool)
    predicted = np.asarray(model.predict(frame[list(schema.features)]))
    truth = frame[schema.target].to_numpy()
    return np.asarray(predicted.astype(str) == truth.astype(str), dtype=bool)


def accuracy(model: Any, frame: pd.DataFrame, schema: Schema) -> float:
    """Share of labelled rows of ``frame`` whose label ``model`` predicts (0..1).

    ``model`` is anything with ``predict`` (a Pipeline or an MLflow pyfunc model).

    Raises:
        ValueError: if ``frame`` is empty.
    """
    right = correct_mask(model, frame, schema)
    if right.size == 0:
        raise ValueError("cannot evaluate on an empty batch (no labelled row)")
    return float(right.mean())


def majority_accuracy(frame: pd.DataFrame, schema: Schema) -> float:
    """Accuracy of always answering the most frequent label of ``frame`` (0..1).

    The no-information baseline of the promotion gate: a model that cannot beat it has
    learnt nothing usable about these rows. A single-class ``frame`` scores 1.0.

    Raises:
        ValueError: if ``frame`` has no labelled row.
    """
    labels = frame[schema.target].dropna()
    if labels.empty:
        raise ValueError("cannot compute a baseline on an empty batch (no labelled row)")
    return float(labels.astype(str).value_counts().iloc[0] / len(labels))


def split_holdout(
    frame: pd.DataFrame, batch_col: str = "batch_id", min_fraction: float = 0.25
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a window, in time order, into (training rows, held-out newest rows).

    With two or more batches the newest batch is held out; with one batch its last
    ``min_fraction`` of rows (the bootstrap case).
    """
    batches = frame[batch_col].unique()
    if len(batches) >= 2:
        newest = frame[batch_col] == batches[-1]
        return frame[~newest], frame[newest]
    cut = int(len(frame) * (1 - min_fraction))
    return frame.iloc[:cut], frame.iloc[cut:]
