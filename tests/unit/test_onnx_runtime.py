"""The ONNX fast path is used only where it reproduces scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.models import infer_signature

from ia_continu.data.sources import build_source
from ia_continu.serving.onnx_runtime import compile_onnx
from ia_continu.serving.signature import SignatureValidator
from ia_continu.settings import Settings
from ia_continu.training import trainer as training


@pytest.fixture(scope="module")
def elec2():  # type: ignore[no-untyped-def]
    source = build_source(Settings())
    train = source.batch(0)
    test = source.batch(7)
    return source.schema, train, test


def test_linear_pipeline_is_converted_and_matches(elec2) -> None:  # type: ignore[no-untyped-def]
    schema, train, test = elec2
    model = training.train(train, schema, "logistic_regression")
    features = test[list(schema.features)].copy()
    features.loc[features.index[:3], "day"] = "9"  # a category never seen in training
    validator = SignatureValidator(infer_signature(features), max_batch_rows=10_000)
    arrays = validator.arrays(features.to_dict(orient="records"))
    predictor = compile_onnx(
        model, validator.columns, validator.arrays(features.head(5).to_dict(orient="records"))
    )
    assert predictor is not None
    expected = model.predict_proba(features)
    np.testing.assert_allclose(predictor.predict_proba(arrays), expected, rtol=0, atol=1e-9)
    assert list(predictor.classes_) == list(model.classes_)


@pytest.mark.parametrize("estimator", ["random_forest", "hist_gradient_boosting"])
def test_tree_ensembles_stay_on_scikit_learn(elec2, estimator: str) -> None:  # type: ignore[no-untyped-def]
    schema, train, test = elec2
    model = training.train(train, schema, estimator)  # type: ignore[arg-type]
    features = test[list(schema.features)]
    validator = SignatureValidator(infer_signature(features), max_batch_rows=100)
    check = validator.arrays(features.head(5).to_dict(orient="records"))
    assert compile_onnx(model, validator.columns, check) is None
