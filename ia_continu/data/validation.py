"""Validation of a batch at ingest, against its stream's schema (pandera).

A batch is stored only when it is fit to be trained on and compared with:

* every feature of the schema and the target are columns of the batch;
* numeric features hold numbers, finite, none missing (a NaN cannot be scored by the
  default estimator, nor by the API, whose signature refuses NaN and infinity);
* categorical features hold strings; a missing category is allowed (the one-hot encoder
  treats it as its own value, as the replay source keeps it);
* the target may be missing on a row (an unlabelled row: training and scoring skip it,
  see ``training.train``), but a present label is one of the stream's known classes
  when they are known (``Schema.classes``);
* at least ``min_rows`` labelled rows (``IAC_MIN_BATCH_ROWS``): a drift check or a
  retrain on a handful of rows is noise.

A single-class batch is valid: real streams have them. Whether a window can be trained
on is decided at training time (``cycle.train_and_gate`` rejects a single-class window).

The verdict names columns, row numbers (0-based within the batch) and the rule broken,
never cell values: it is sent to Discord and written to logs, while the rows themselves
stay in the quarantine table.

Reference: pandera ``DataFrameSchema`` / ``Check`` and lazy validation
(https://pandera.readthedocs.io/en/stable/lazy_validation.html).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ia_continu.data.sources import Schema

if TYPE_CHECKING:
    # pandera is imported where a batch is validated: the flow process imports this module
    # (through the repository) on every cycle, before knowing whether it will ingest.
    import pandera.pandas as pa
    from pandera.errors import SchemaErrors

#: Failures listed in a verdict's reason (all are counted).
MAX_REASON_FAILURES = 5
#: Failures kept, as records, in the quarantine table.
MAX_STORED_FAILURES = 50

# Rule names, as they appear in a failure's ``check`` and in the reason.
NOT_A_NUMBER = "not a number"
NOT_FINITE = "infinite"
MISSING = "missing"
NOT_A_STRING = "not a string"
UNKNOWN_CLASS = "unknown class"
MISSING_COLUMN = "missing column"
TOO_FEW_ROWS = "too few labelled rows"


@dataclass(frozen=True)
class Failure:
    """One broken rule.

    Attributes:
        column: the column at fault, or None for a batch-wide rule (row count).
        row: 0-based row number within the batch, or None for a column/batch rule.
        check: the rule broken: one of this module's rule names (``too few labelled
            rows`` followed by the count and the setting).
    """

    column: str | None
    row: int | None
    check: str

    def describe(self) -> str:
        """``column 'x' row 3: infinite`` (no cell value)."""
        where = [f"column {self.column!r}"] if self.column is not None else []
        if self.row is not None:
            where.append(f"row {self.row}")
        return f"{' '.join(where) or 'batch'}: {self.check}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"column", "row", "check"}``."""
        return {"column": self.column, "row": self.row, "check": self.check}


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`validate_batch`.

    Attributes:
        n_rows: rows in the batch.
        failures: every broken rule, in column order then row order (empty when valid).
    """

    n_rows: int
    failures: tuple[Failure, ...] = field(default=())

    @property
    def valid(self) -> bool:
        """True when the batch may be stored and trained on."""
        return not self.failures

    @property
    def reason(self) -> str:
        """One line naming the first failures (columns, rows, rules), no cell value."""
        if self.valid:
            return "valid"
        shown = "; ".join(f.describe() for f in self.failures[:MAX_REASON_FAILURES])
        more = len(self.failures) - MAX_REASON_FAILURES
        return f"{len(self.failures)} failure(s): {shown}" + (f"; +{more} more" if more > 0 else "")


def _as_numbers(series: pd.Series) -> pd.Series:
    # Text that does not parse becomes NaN here; the "number" check reports it.
    if pd.api.types.is_bool_dtype(series) or series.dtype == object:
        return pd.to_numeric(series.astype(object), errors="coerce").astype(float)
    return series.astype(float)


def _is_number(series: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return pd.Series(True, index=series.index)
    return series.map(
        lambda v: isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
    )


def _is_finite(series: pd.Series) -> pd.Series:
    # Only +-inf fails here: NaN is "missing" and text "not a number", reported elsewhere.
    return pd.Series(~np.isinf(_as_numbers(series).to_numpy()), index=series.index)


def _is_string(series: pd.Series) -> pd.Series:
    return series.map(lambda v: isinstance(v, str))


def batch_schema(schema: Schema, min_rows: int = 1) -> pa.DataFrameSchema:
    """The pandera schema a batch of a stream with column roles ``schema`` must satisfy.

    Args:
        schema: the stream's column roles (``BatchSource.schema``).
        min_rows: fewest labelled rows (target not missing) a batch may have.

    Returns:
        A lazy-validatable ``DataFrameSchema``; extra columns are allowed.
    """
    import pandera.pandas as pa

    columns: dict[str, pa.Column] = {}
    for name in schema.numeric:
        columns[name] = pa.Column(
            None,
            nullable=False,
            checks=[
                pa.Check(_is_number, name=NOT_A_NUMBER, error=NOT_A_NUMBER),
                pa.Check(_is_finite, name=NOT_FINITE, error=NOT_FINITE),
            ],
        )
    for name in schema.categorical:
        columns[name] = pa.Column(
            None,
            nullable=True,
            checks=[pa.Check(_is_string, name=NOT_A_STRING, error=NOT_A_STRING)],
        )
    target_checks = []
    if schema.classes:
        target_checks.append(
            pa.Check.isin(list(schema.classes), name=UNKNOWN_CLASS, error=UNKNOWN_CLASS)
        )
    columns[schema.target] = pa.Column(None, nullable=True, checks=target_checks)
    target = schema.target

    def enough_rows(frame: pd.DataFrame) -> bool:
        labelled = frame[target].notna().sum() if target in frame.columns else 0
        return bool(labelled >= min_rows)

    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(
                enough_rows,
                name=TOO_FEW_ROWS,
                error=TOO_FEW_ROWS,
            )
        ],
        strict=False,
    )


def _row(index: Hashable, positions: pd.Index) -> int | None:
    if index is None or (isinstance(index, float) and np.isnan(index)):
        return None
    try:
        return int(positions.get_loc(index))  # type: ignore[arg-type]
    except (KeyError, TypeError):
        return None


def _failures(
    errors: SchemaErrors, frame: pd.DataFrame, target: str, min_rows: int
) -> list[Failure]:
    out = []
    for case in errors.failure_cases.to_dict("records"):
        check = str(case["check"])
        column = case["column"]
        if check == "column_in_dataframe":
            # pandera puts the missing column's name in failure_case.
            column, check = case["failure_case"], MISSING_COLUMN
        elif check == "not_nullable":
            check = MISSING
        elif check.startswith(TOO_FEW_ROWS):
            column = None
            labelled = int(frame[target].notna().sum()) if target in frame.columns else 0
            check = f"{TOO_FEW_ROWS}: {labelled} < IAC_MIN_BATCH_ROWS={min_rows}"
        column = None if column is None or column != column else str(column)
        out.append(Failure(column, _row(case["index"], frame.index), check))
    order = {name: i for i, name in enumerate(frame.columns)}
    return sorted(
        out,
        key=lambda f: (
            f.column is None,
            order.get(f.column, len(order)) if f.column is not None else 0,
            -1 if f.row is None else f.row,
        ),
    )


def validate_batch(frame: pd.DataFrame, schema: Schema, min_rows: int = 1) -> Verdict:
    """Check ``frame`` (one batch: features + target columns) against ``schema``.

    Pure: never raises on bad data, never modifies ``frame``.

    Args:
        frame: the batch as the source served it.
        schema: the stream's column roles.
        min_rows: fewest labelled rows accepted (``IAC_MIN_BATCH_ROWS``).

    Returns:
        The verdict: ``valid``, and the failures (column, 0-based row, rule) otherwise.
    """
    from pandera.errors import SchemaErrors

    try:
        batch_schema(schema, min_rows).validate(frame, lazy=True)
    except SchemaErrors as errors:
        return Verdict(len(frame), tuple(_failures(errors, frame, schema.target, min_rows)))
    return Verdict(len(frame))
