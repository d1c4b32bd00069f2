"""Optional fast inference: the registered scikit-learn pipeline converted to ONNX at load
time (skl2onnx) and run by onnxruntime, used only when it reproduces the pipeline.

Why: on a one-row request, scikit-learn's ColumnTransformer spends ~5-8 ms in pandas
indexing and input checks; the same linear pipeline in onnxruntime takes ~0.04 ms.
Which estimators: linear ones (``LogisticRegression``), whose conversion is exact to
float64 rounding. Tree ensembles are left to scikit-learn: skl2onnx compares
thresholds in another precision than scikit-learn's float32 trees, so a few rows near a
split flip class (measured 0.05-0.08 % of Elec2 rows for a random forest).

Sources: skl2onnx ``to_onnx`` (https://onnx.ai/sklearn-onnx/api_summary.html), option
``zipmap=False``; onnxruntime ``InferenceSession``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from loguru import logger
from mlflow.types import DataType
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ia_continu.serving.signature import Column

EXACT_ESTIMATORS = (LogisticRegression,)
_EXACT_STEPS = (StandardScaler, OneHotEncoder)


class OnnxPredictor:
    """A converted pipeline: ``predict_proba`` on per-column arrays, no DataFrame."""

    def __init__(self, session: Any, columns: tuple[Column, ...], classes: np.ndarray):
        self._session = session
        self._columns = columns
        self.classes_ = classes

    def predict_proba(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities, shape ``(n_rows, n_classes)``, columns in ``classes_`` order.

        Args:
            arrays: one 1-D array per input column, dtypes as built by
                :meth:`SignatureValidator.arrays`.
        """
        feeds = {c.name: arrays[c.name].reshape(-1, 1) for c in self._columns}
        _, probabilities = self._session.run(None, feeds)
        return np.asarray(probabilities, dtype=float)


def _convertible(model: Any, columns: tuple[Column, ...]) -> str | None:
    """Why ``model`` is not converted (None if it is a pipeline we convert exactly)."""
    if not isinstance(model, Pipeline) or not isinstance(model.steps[-1][1], EXACT_ESTIMATORS):
        return "final estimator is not a linear model"
    for _, step in model.steps[:-1]:
        if not isinstance(step, ColumnTransformer):
            return f"unsupported step {type(step).__name__}"
        for _, transformer, _ in step.transformers_:
            if transformer not in ("drop",) and not isinstance(transformer, _EXACT_STEPS):
                return f"unsupported transformer {type(transformer).__name__}"
    if any(c.type not in (DataType.double, DataType.string) for c in columns):
        return "only double and string columns are converted"
    return None


def compile_onnx(
    model: Any, columns: tuple[Column, ...], check_arrays: dict[str, np.ndarray]
) -> OnnxPredictor | None:
    """Convert ``model`` and check it on ``check_arrays``; None when not applicable.

    Returns None (and logs why) if the pipeline is not one converted exactly, if
    conversion fails, or if predicted probabilities differ from scikit-learn's by more
    than 1e-9 on the check rows (the model's input example).
    """
    reason = _convertible(model, columns)
    if reason is not None:
        logger.info("serving with scikit-learn: {}", reason)
        return None
    try:
        import onnxruntime
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

        initial_types = [
            (
                c.name,
                StringTensorType([None, 1])
                if c.type is DataType.string
                else DoubleTensorType([None, 1]),
            )
            for c in columns
        ]
        onx = to_onnx(model, initial_types=initial_types, options={"zipmap": False})
        options = onnxruntime.SessionOptions()
        # One request is tiny: thread hand-offs cost more than they save.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            onx.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # conversion is an optimisation: any failure means "don't"
        logger.warning("ONNX conversion failed, serving with scikit-learn: {}", exc)
        return None
    predictor = OnnxPredictor(session, columns, np.asarray(model.classes_))
    import pandas as pd

    expected = model.predict_proba(pd.DataFrame(check_arrays)[[c.name for c in columns]])
    got = predictor.predict_proba(check_arrays)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=0, atol=1e-9):
        logger.warning("ONNX output differs from scikit-learn, serving with scikit-learn")
        return None
    return predictor
