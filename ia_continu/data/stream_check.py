"""Can the loop use the configured stream? Read the source's header and first batch and
say, in one line naming the ``IAC_*`` variable at fault, what stops it.

Shared by ``ia-continu check`` and the bootstrap (:func:`stream_or_exit`), so that a
stream the loop cannot use fails at start, not every cycle later.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and the sources load only when a stream is read
    import pandas as pd

    from ia_continu.data.sources import BatchSource
    from ia_continu.data.validation import Verdict
    from ia_continu.settings import Settings

#: A cell is quoted in a message only when this short: a longer text may be private.
MAX_QUOTED_CELL = 20
#: Labels the summary line lists; beyond, only their count.
MAX_LISTED_CLASSES = 10
#: A target with a different value on every labelled row of a batch at least this long is
#: an identifier or a measurement, not a label.
MIN_ROWS_FOR_ID_CHECK = 20


@dataclass(frozen=True)
class StreamSummary:
    """What :func:`check_stream` learnt from a source's header and first batch.

    Attributes:
        name: the stream identity (``BatchSource.name``).
        rows: data rows in one pass over the file; None for an unbounded stream.
        batches: batches in one pass; None for an unbounded stream.
        order: how rows follow each other in time (``sorted by 'date'``, ``file order``).
        numeric: numeric feature names, in model input order.
        categorical: categorical feature names.
        target: the label column.
        first_batch_rows: rows of batch 0.
        classes: the labels present in batch 0, sorted as text.
    """

    name: str
    rows: int | None
    batches: int | None
    order: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    target: str
    first_batch_rows: int
    classes: tuple[Any, ...]

    def line(self) -> str:
        """One line: ``stream NAME: R rows, B batches (order), features, classes``."""
        size = f"{self.rows} rows, {self.batches} batches" if self.rows is not None else "unbounded"
        n_features = len(self.numeric) + len(self.categorical)
        listed = ""
        if len(self.classes) <= MAX_LISTED_CLASSES:
            listed = ": " + ", ".join(str(c) for c in self.classes)
        return (
            f"stream {self.name}: {size} ({self.order}); {n_features} features "
            f"({len(self.numeric)} numeric, {len(self.categorical)} categorical); target "
            f"{self.target!r}: {len(self.classes)} classes in the first batch "
            f"({self.first_batch_rows} rows){listed}"
        )


def _quote(value: Any) -> str:
    """A cell for a message: quoted when short and printable, else only its length."""
    text = str(value)
    if len(text) <= MAX_QUOTED_CELL and text.isprintable():
        return repr(text)
    return f"a text of {len(text)} characters"


def _where(source: BatchSource, row: int | None) -> str:
    from ia_continu.data.sources import ReplaySource

    if row is None:
        return "the first batch"
    if isinstance(source, ReplaySource):
        return f"data row {source.data_row(0, row)} (header not counted)"
    return f"row {row} of the first batch"


def _first_batch_problem(
    source: BatchSource, batch: pd.DataFrame, verdict: Verdict, min_rows: int
) -> str:
    """The first broken rule of an invalid first batch, as ``IAC_X: what, where, what to do``."""
    from ia_continu.data import validation

    first = verdict.failures[0]
    column, row = first.column, first.row
    alike = sum(1 for f in verdict.failures if (f.column, f.check) == (column, first.check))
    more = f" ({alike - 1} more in the first batch)" if alike > 1 else ""
    where = _where(source, row)
    if first.check == validation.NOT_A_NUMBER and column is not None and row is not None:
        return (
            f"IAC_REPLAY_CATEGORICAL_COLUMNS: column {column!r} is numeric but {where} holds "
            f"{_quote(batch[column].iloc[row])}{more}: declare the column in "
            "IAC_REPLAY_CATEGORICAL_COLUMNS if it is a category, else fix the file"
        )
    if first.check == validation.NOT_FINITE:
        return (
            f"IAC_REPLAY_PATH: column {column!r} is infinite at {where}{more}: numeric "
            "features must be finite (a batch holding one is quarantined)"
        )
    if first.check == validation.MISSING:
        return (
            f"IAC_REPLAY_PATH: column {column!r} is empty at {where}{more}: numeric features "
            "must be present (a batch with a gap is quarantined); fill the gaps or drop the column"
        )
    target = source.schema.target
    if first.check == validation.UNKNOWN_CLASS and row is not None:
        return (
            f"IAC_REPLAY_CLASSES: {where} has the label {_quote(batch[target].iloc[row])}{more}, "
            f"not one of {list(source.schema.classes)}"
        )
    if first.check.startswith(validation.TOO_FEW_ROWS):
        labelled = int(batch[target].notna().sum())
        return (
            f"IAC_MIN_BATCH_ROWS: the first batch has {labelled} labelled rows of {len(batch)} "
            f"(the target {target!r}, IAC_REPLAY_TARGET, is empty on the others), fewer than "
            f"IAC_MIN_BATCH_ROWS={min_rows}"
        )
    return f"IAC_REPLAY_PATH: the first batch is invalid: {verdict.reason}"


def check_stream(settings: Settings) -> StreamSummary:
    """Build the source, read its header and first batch, and check that the loop can use it.

    The first batch must pass ingest validation (:func:`ia_continu.data.validation.validate_batch`,
    with ``IAC_MIN_BATCH_ROWS``), hold at least two classes (the first model is trained
    on it) and not a different label on every row (an identifier, not a label).

    Returns:
        What was read (:class:`StreamSummary`).

    Raises:
        ia_continu.data.sources.SourceConfigError: one line that starts with the ``IAC_*``
            variable at fault; it quotes a cell only when short (:data:`MAX_QUOTED_CELL`)
            and places it by data row (1-based, header not counted, file order).
    """
    from ia_continu.data.sources import ReplaySource, SourceConfigError, build_source
    from ia_continu.data.validation import validate_batch

    if settings.data_source == "serving":
        # The serving stream starts with the seed source's batches: check the first one.
        from ia_continu.data.serving_source import seed_source

        source = seed_source(settings)
    else:
        source = build_source(settings)
    batch = source.batch(0)
    schema = source.schema
    verdict = validate_batch(batch, schema, settings.min_batch_rows)
    if not verdict.valid:
        raise SourceConfigError(
            _first_batch_problem(source, batch, verdict, settings.min_batch_rows)
        )
    labels = batch[schema.target].dropna()
    classes = tuple(sorted(labels.unique().tolist(), key=str))
    replay = isinstance(source, ReplaySource)
    if len(classes) < 2:
        setting = "IAC_REPLAY_TARGET / IAC_BATCH_SIZE" if replay else "IAC_BATCH_SIZE"
        raise SourceConfigError(
            f"{setting}: the first batch ({len(labels)} labelled rows) holds a single class "
            f"({_quote(classes[0])}): no first model can be trained on it; check that "
            "IAC_REPLAY_TARGET names the label column, or raise IAC_BATCH_SIZE"
        )
    if len(labels) >= MIN_ROWS_FOR_ID_CHECK and len(classes) == len(labels):
        raise SourceConfigError(
            f"IAC_REPLAY_TARGET: column {schema.target!r} has a different value on each of the "
            f"{len(labels)} labelled rows of the first batch: it is not a class label"
        )
    if isinstance(source, ReplaySource):
        rows: int | None = source.n_rows
        batches: int | None = source.n_batches
        order = f"sorted by {source.time_column!r}" if source.time_column else "file order"
    else:
        rows = batches = None
        order = "generated"
    return StreamSummary(
        name=source.name,
        rows=rows,
        batches=batches,
        order=order,
        numeric=schema.numeric,
        categorical=schema.categorical,
        target=schema.target,
        first_batch_rows=len(batch),
        classes=classes,
    )


def stream_or_exit(settings: Settings) -> StreamSummary:
    """:func:`check_stream`, or exit 2 with its one line (the variable at fault) on stderr."""
    from ia_continu.data.sources import SourceConfigError

    try:
        return check_stream(settings)
    except SourceConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
