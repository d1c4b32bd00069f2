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


_MIXED = _signature(
    ColSpec(DataType.double, "x"),
    ColSpec(DataType.long, "n"),
    ColSpec(DataType.string, "city"),
    ColSpec(DataType.boolean, "flag", required=False),
)
_GOOD = '{"x": 1, "n": 2, "city": "a"}'


@pytest.mark.parametrize(
    "rows",
    [
        [_GOOD] * 7,
        [_GOOD, '{"x": 1.5, "n": 3, "city": "b", "flag": true}'] * 4,
        [_GOOD] * 5 + ['{"x": "1", "n": 2.5, "city": 3, "flag": 1, "extra": 0}'] + [_GOOD] * 2,
        ['{"x": true, "n": true, "city": null}', _GOOD, '{"n": 2}', "[1]", "7", _GOOD, _GOOD],
        [_GOOD, '{"x": NaN, "n": 1, "city": "a"}', _GOOD, _GOOD, _GOOD],  # orjson refuses NaN
        [_GOOD, '{"x": 1e400, "n": 99999999999999999999999, "city": "a"}'] + [_GOOD] * 3,
        [_GOOD] * 11,  # too long
        [],  # too short
    ],
)
def test_chunked_batch_parsing_answers_like_one_validation(rows: list[str]) -> None:
    """parse_batch validates big batches in chunks (so the event loop's thread gets the GIL
    between them), with the same rows and errors, row indices included, as validate_json."""
    validator = SignatureValidator(_MIXED, max_batch_rows=10)
    body = ('{"rows": [' + ", ".join(rows) + "]}").encode()

    def outcome(call):  # type: ignore[no-untyped-def]
        try:
            return call(), None
        except ValidationError as exc:
            return None, repr(exc.errors(include_url=False))

    expected_rows, expected_errors = outcome(lambda: validator.validate_batch(body))
    got, got_errors = outcome(lambda: validator.parse_batch(body, chunk_rows=2))
    assert got_errors == expected_errors
    if expected_rows is not None:
        assert got is not None and got[0] == expected_rows
        assert list(got[1]) == ["x", "n", "city", "flag"] and len(got[1]["x"]) == len(rows)


def test_other_bodies_take_the_single_validation_path() -> None:
    validator = SignatureValidator(_MIXED, max_batch_rows=10)
    for body in (b"not json", b"[1, 2]", b'{"rows": [], "more": 1}', b'{"rows": 3}'):
        with pytest.raises(ValidationError) as chunked:
            validator.parse_batch(body, chunk_rows=1)
        with pytest.raises(ValidationError) as single:
            validator.validate_batch(body)
        assert chunked.value.errors(include_url=False) == single.value.errors(include_url=False)
