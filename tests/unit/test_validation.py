"""Batch validation at ingest: every rule, the reason's wording, no cell value in it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ia_continu.data.sources import Schema, SyntheticSource
from ia_continu.data.validation import (
    MAX_REASON_FAILURES,
    Failure,
    Verdict,
    batch_schema,
    validate_batch,
)

SCHEMA = Schema(features=("x", "colour"), categorical=("colour",), target="y")
KNOWN = Schema(
    features=("x", "colour"), categorical=("colour",), target="y", classes=("UP", "DOWN")
)


def _frame(**columns: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "x": [1.0, 2.0, 3.0, 4.0],
        "colour": ["red", "blue", "red", "blue"],
        "y": ["UP", "DOWN", "UP", "DOWN"],
    }
    base.update(columns)
    return pd.DataFrame(base)


def test_a_clean_batch_is_valid() -> None:
    verdict = validate_batch(_frame(), KNOWN, min_rows=4)
    assert verdict == Verdict(4)
    assert verdict.valid and verdict.reason == "valid"


def test_synthetic_batches_are_valid() -> None:
    source = SyntheticSource(batch_size=200)
    for position in range(3):
        assert validate_batch(source.batch(position), source.schema, min_rows=30).valid


def test_missing_category_and_unlabelled_row_are_allowed() -> None:
    frame = _frame(colour=["red", None, "red", np.nan], y=["UP", None, "DOWN", "UP"])
    assert validate_batch(frame, KNOWN, min_rows=3).valid


def test_a_single_class_batch_is_valid_data() -> None:
    """Real streams have them; training decides (train_and_gate rejects such a window)."""
    assert validate_batch(_frame(y=["UP"] * 4), KNOWN, min_rows=4).valid


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (np.nan, "missing"),
        (None, "missing"),
        (np.inf, "infinite"),
        (-np.inf, "infinite"),
        ("12,5", "not a number"),
        ("abc", "not a number"),
        (True, "not a number"),
    ],
)
def test_a_bad_numeric_cell_is_named_by_column_row_and_rule(value: object, rule: str) -> None:
    frame = _frame(x=[1.0, 2.0, value, 4.0])
    verdict = validate_batch(frame, SCHEMA)
    assert not verdict.valid
    assert verdict.failures == (Failure("x", 2, rule),)
    assert verdict.reason == f"1 failure(s): column 'x' row 2: {rule}"


def test_reason_never_holds_a_cell_value() -> None:
    frame = _frame(x=[1.0, "s3cr3t-value", np.inf, 4.0], colour=["red", 42, "red", "blue"])
    verdict = validate_batch(frame, KNOWN)
    assert "s3cr3t-value" not in verdict.reason and "42" not in verdict.reason
    assert [f.to_dict() for f in verdict.failures] == [
        {"column": "x", "row": 1, "check": "not a number"},
        {"column": "x", "row": 2, "check": "infinite"},
        {"column": "colour", "row": 1, "check": "not a string"},
    ]


def test_unknown_class_only_when_classes_are_known() -> None:
    frame = _frame(y=["UP", "DOWN", "SIDEWAYS", "UP"])
    assert validate_batch(frame, SCHEMA).valid
    verdict = validate_batch(frame, KNOWN)
    assert verdict.failures == (Failure("y", 2, "unknown class"),)


def test_too_few_labelled_rows() -> None:
    verdict = validate_batch(_frame(y=["UP", None, None, "DOWN"]), SCHEMA, min_rows=3)
    assert verdict.failures == (
        Failure(None, None, "too few labelled rows: 2 < IAC_MIN_BATCH_ROWS=3"),
    )
    assert verdict.reason == "1 failure(s): batch: too few labelled rows: 2 < IAC_MIN_BATCH_ROWS=3"
    assert validate_batch(_frame(), SCHEMA, min_rows=4).valid
    one_row = validate_batch(_frame().head(1), SCHEMA, min_rows=2)
    assert not one_row.valid and one_row.n_rows == 1


def test_an_empty_batch_is_too_small() -> None:
    verdict = validate_batch(_frame().head(0), SCHEMA, min_rows=1)
    assert [f.check for f in verdict.failures] == [
        "too few labelled rows: 0 < IAC_MIN_BATCH_ROWS=1"
    ]


def test_a_missing_column_is_named() -> None:
    verdict = validate_batch(_frame().drop(columns="x"), SCHEMA)
    assert Failure("x", None, "missing column") in verdict.failures
    no_target = validate_batch(_frame().drop(columns="y"), SCHEMA)
    assert Failure("y", None, "missing column") in no_target.failures
    assert any(f.check.startswith("too few labelled rows") for f in no_target.failures)


def test_the_reason_lists_the_first_failures_and_counts_the_rest() -> None:
    frame = pd.DataFrame({"x": [np.inf] * 8, "colour": ["a"] * 8, "y": ["UP"] * 8})
    verdict = validate_batch(frame, SCHEMA)
    assert len(verdict.failures) == 8
    shown = [f"column 'x' row {r}: infinite" for r in range(MAX_REASON_FAILURES)]
    assert verdict.reason == f"8 failure(s): {'; '.join(shown)}; +3 more"


def test_rows_are_positions_within_the_batch_even_with_another_index() -> None:
    frame = _frame(x=[1.0, np.nan, 3.0, 4.0]).set_axis([10, 11, 12, 13])
    assert validate_batch(frame, SCHEMA).failures == (Failure("x", 1, "missing"),)


def test_validation_does_not_modify_the_batch() -> None:
    frame = _frame(x=[1.0, "2", np.inf, 4.0])
    before = frame.copy()
    validate_batch(frame, SCHEMA)
    pd.testing.assert_frame_equal(frame, before)


def test_batch_schema_allows_extra_columns() -> None:
    frame = _frame().assign(extra=["a", 1, None, 2.5])
    batch_schema(SCHEMA, min_rows=1).validate(frame)
