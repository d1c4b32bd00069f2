"""SignatureValidator: the request contract follows the MLflow signature."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.models.signature import ModelSignature
from mlflow.types import ColSpec, DataType, Schema, TensorSpec
from pydantic import ValidationError

from ia_continu.serving.signature import SignatureValidator, UnsupportedSignature


def _signature(*cols: ColSpec) -> ModelSignature:
    return ModelSignature(inputs=Schema(list(cols)))


def test_types_required_and_optional_columns() -> None:
    validator = SignatureValidator(
        _signature(
            ColSpec(DataType.double, "x"),
            ColSpec(DataType.long, "n"),
            ColSpec(DataType.string, "city"),
            ColSpec(DataType.boolean, "flag", required=False),
        ),
        max_batch_rows=3,
    )
    rows = validator.validate_batch(
        b'{"rows": [{"x": 1, "n": 2, "city": "a"}, {"x": 1.5, "n": 3, "city": "b", "flag": true}]}'
    )
    arrays = validator.arrays(rows)
    assert arrays["x"].dtype == np.float64 and arrays["n"].dtype == np.int64
    assert arrays["city"].dtype == object and list(arrays["flag"]) == [None, True]
    frame = validator.frame(arrays)
    assert list(frame.columns) == ["x", "n", "city", "flag"] and len(frame) == 2
    with pytest.raises(ValidationError) as info:
        validator.validate_row(b'{"x": 1, "n": 2.5, "city": "a"}')
    assert info.value.errors()[0]["loc"] == ("n",)
    with pytest.raises(ValidationError) as info:
        validator.validate_row(b'{"x": "1", "n": 2, "city": "a"}')  # no silent coercion
    assert info.value.errors()[0]["loc"] == ("x",)


def test_json_schema_is_strict() -> None:
    validator = SignatureValidator(_signature(ColSpec(DataType.double, "a b")), max_batch_rows=7)
    row = validator.row_json_schema()
    assert row["required"] == ["a b"] and row["additionalProperties"] is False
    assert validator.batch_json_schema()["properties"]["rows"]["maxItems"] == 7


def test_inferred_signature_of_a_frame() -> None:
    frame = pd.DataFrame({"f": [0.1, 0.2], "c": ["u", "v"]})
    validator = SignatureValidator(infer_signature(frame), max_batch_rows=10)
    assert [(c.name, c.type) for c in validator.columns] == [
        ("f", DataType.double),
        ("c", DataType.string),
    ]


@pytest.mark.parametrize(
    "signature",
    [
        None,
        ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, 3))])),
        _signature(ColSpec(DataType.binary, "blob")),
    ],
)
def test_unsupported_signatures_are_refused(signature: ModelSignature | None) -> None:
    with pytest.raises(UnsupportedSignature):
        SignatureValidator(signature, max_batch_rows=10)
