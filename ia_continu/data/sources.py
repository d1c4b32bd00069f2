"""Data sources: one interface, a synthetic generator and a CSV replay, chosen by settings.

A source is a pure function of ``position`` (0, 1, 2, …): the same position always gives
the same batch, which is what makes ingestion idempotent and runs reproducible.
"""

from __future__ import annotations

import difflib
import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ia_continu.settings import Settings, SyntheticMode


class StreamExhausted(RuntimeError):
    """The replayed stream has no batch at this position and looping is off."""


class SourceConfigError(ValueError):
    """A source setting is wrong; the message names the ``IAC_*`` variable at fault."""


@dataclass(frozen=True)
class Schema:
    """Column roles of a stream.

    Attributes:
        features: feature column names, in model input order.
        categorical: the subset of ``features`` that is categorical (values are strings).
        target: name of the label column.
        classes: the labels the target may take, when known (empty: any label); a
            batch with another label is quarantined at ingest (``ia_continu.data.validation``).
    """

    features: tuple[str, ...]
    categorical: tuple[str, ...]
    target: str
    classes: tuple[Any, ...] = ()

    @property
    def numeric(self) -> tuple[str, ...]:
        """Features that are not categorical."""
        return tuple(c for c in self.features if c not in self.categorical)


class BatchSource(Protocol):
    """Anything that yields labelled batches by position."""

    @property
    def name(self) -> str:
        """Stream identity: positions are only comparable within one name."""
        ...

    @property
    def schema(self) -> Schema:
        """Column roles of the stream."""
        ...

    def batch(self, position: int) -> pd.DataFrame:
        """Rows of batch ``position``: ``schema.features`` + ``schema.target`` columns.

        Raises:
            StreamExhausted: past the end of a finite stream.
            ValueError: if ``position`` is negative.
        """
        ...


@dataclass
class SyntheticSource:
    """Two numeric features, a linear labelling rule, optional drift.

    ``feature1, feature2 ~ N(0, 1)``; label ``1`` when ``feature1 + feature2 > 0`` then
    flipped with probability ``label_noise``. Periods are ``period_batches`` batches long;
    in odd periods:

    * ``covariate_shift``: ``feature1`` is shifted by -0.5 (data drift, same rule);
    * ``concept_drift``: the rule becomes ``feature1 - feature2 > 0`` (a stale model
      drops to about 50 % accuracy);
    * ``stable``: nothing changes.

    Each batch is drawn from ``numpy.random.default_rng([seed, position])``.
    """

    mode: SyntheticMode = "concept_drift"
    seed: int = 42
    batch_size: int = 200
    period_batches: int = 5
    label_noise: float = 0.05
    schema: Schema = field(
        default=Schema(
            features=("feature1", "feature2"), categorical=(), target="target", classes=(0, 1)
        ),
        init=False,
    )

    @property
    def name(self) -> str:
        """Stream identity: positions are only comparable within one name."""
        return f"synthetic:{self.mode}:seed={self.seed}:n={self.batch_size}"

    def is_drifted_period(self, position: int) -> bool:
        """Whether ``position`` falls in an odd (shifted or drifted) period."""
        return self.mode != "stable" and (position // self.period_batches) % 2 == 1

    def batch(self, position: int) -> pd.DataFrame:
        """Batch ``position`` (``batch_size`` rows); see the class docstring for the rule."""
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        rng = np.random.default_rng([self.seed, position])
        x1 = rng.standard_normal(self.batch_size)
        x2 = rng.standard_normal(self.batch_size)
        drifted = self.is_drifted_period(position)
        if drifted and self.mode == "covariate_shift":
            x1 = x1 - 0.5
        score = x1 - x2 if drifted and self.mode == "concept_drift" else x1 + x2
        label = (score > 0).astype(np.int64)
        flip = rng.random(self.batch_size) < self.label_noise
        label = np.where(flip, 1 - label, label)
        return pd.DataFrame({"feature1": x1, "feature2": x2, "target": label})


def _numbers_where_possible(column: pd.Series) -> pd.Series:
    """``column`` as float64 when every present cell is a number; else object dtype with
    the cells that do not parse left as they are (so validation names them)."""
    numbers = pd.to_numeric(column, errors="coerce")
    unparsed = numbers.isna() & column.notna()
    if not unparsed.any():
        return numbers.astype(float)
    return column.astype(object).where(unparsed, numbers.astype(object))


#: Columns an error message lists before it elides the rest.
_SHOWN_COLUMNS = 20


def _not_a_column(setting: str, name: str, columns: list[str]) -> str:
    """``IAC_X: column 'y' is not in [...]``, with the closest column name and a hint when
    the whole header was read as one column (a file not separated by commas)."""
    listing = str(columns[:_SHOWN_COLUMNS])
    if len(columns) > _SHOWN_COLUMNS:
        listing = f"{listing[:-1]}, ... ({len(columns)} columns)]"
    message = f"{setting}: column {name!r} is not in {listing}"
    if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
        return message + "; the file does not look comma-separated"
    close = difflib.get_close_matches(name, columns, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    # The defaults name Elec2's columns: the usual mistake with a new stream.
    if setting == "IAC_REPLAY_TIME_COLUMN":
        message += f"; set {setting}= (empty) if the file order is the time order"
    elif setting == "IAC_REPLAY_CATEGORICAL_COLUMNS":
        message += f"; set {setting}= (empty) if every feature is numeric"
    return message


def _unreadable(path: str | Path, exc: ValueError) -> SourceConfigError:
    if isinstance(exc, pd.errors.EmptyDataError):
        return SourceConfigError(f"IAC_REPLAY_PATH: {path} is empty (not even a header line)")
    # pandas and codec messages name lines and byte offsets, never cell contents.
    why = (str(exc).splitlines() or [type(exc).__name__])[-1][:200]
    return SourceConfigError(f"IAC_REPLAY_PATH: {path} is not a readable CSV file: {why}")


def _read_header(path: Path) -> list[str]:
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except ValueError as exc:  # EmptyDataError, ParserError, UnicodeDecodeError
        raise _unreadable(path, exc) from None
    except OSError as exc:  # a file we may not read
        raise SourceConfigError(f"IAC_REPLAY_PATH: cannot read {path}: {exc.strerror}") from None


def _time_key(column: pd.Series, name: str) -> pd.Series:
    """Sort key of the time column: its numbers, or its cells parsed as dates.

    Text is never sorted as text (``"10/1/2020"`` would come before ``"9/1/2020"``).

    Raises:
        SourceConfigError: a present cell is neither a number nor a date.
    """
    if pd.api.types.is_numeric_dtype(column):
        return column
    with warnings.catch_warnings():
        # pandas warns when it cannot infer one format and parses cell by cell.
        warnings.simplefilter("ignore")
        try:
            key = pd.to_datetime(column, errors="coerce", utc=True)
        except (ValueError, TypeError):
            key = pd.Series(pd.NaT, index=column.index)
    bad = key.isna() & column.notna()
    if bad.any():
        row = int(column.index[bad.to_numpy()][0]) + 1
        raise SourceConfigError(
            f"IAC_REPLAY_TIME_COLUMN: column {name!r} holds neither numbers nor dates "
            f"(data row {row}); leave IAC_REPLAY_TIME_COLUMN empty to replay in file order"
        )
    return key


@lru_cache(maxsize=4)
def _load_csv(path: str, time_column: str | None, text_columns: tuple[str, ...]) -> pd.DataFrame:
    """The file's rows in time order, indexed by their 0-based data row in the file.

    ``text_columns`` (target, categorical) are read as written: a label ``1`` stays
    ``"1"`` even in a column with gaps, which pandas would otherwise read as ``1.0``.
    """
    try:
        frame = pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
    except ValueError as exc:
        raise _unreadable(path, exc) from None
    if time_column:
        # A stable sort keeps the file order among equal times; missing times go last.
        order = _time_key(frame[time_column], time_column).sort_values(kind="stable").index
        frame = frame.loc[order]
    return frame


@dataclass
class ReplaySource:
    """Replays a CSV in time order, ``batch_size`` rows per batch.

    Position ``p`` holds rows ``[p * batch_size, (p + 1) * batch_size)`` of the file
    sorted by ``time_column`` (numbers, or dates in any one format pandas parses); with
    no time column (None or empty) the file order is the time order. The last batch may
    be shorter. With ``loop`` the stream starts over after the last batch; positions
    keep increasing.

    Every column but the target and the time column is a feature. The target and the
    categorical columns are read as the text written in the file (``0``/``1``,
    ``UP``/``DOWN``, ``0``..``39``: any number of classes), so labels are strings.
    Missing cells stay missing (NaN, or None in categorical and target columns); a
    numeric column is numeric in every batch but those holding an unparsable cell (a
    stray text), where that cell is kept as text for validation to reject that batch
    alone. ``classes`` lists the known labels (as strings; empty: any label).

    Raises:
        SourceConfigError: the file is missing, empty or not a CSV, a named column is
            not in it, a categorical column is also the target or time column, the
            time column holds something else than numbers or dates, or a numeric
            feature holds no number at all (a categorical column not declared). The
            message starts with the ``IAC_*`` variable at fault.
    """

    path: Path
    target: str
    batch_size: int = 336
    time_column: str | None = None
    categorical: tuple[str, ...] = ()
    loop: bool = False
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.time_column = self.time_column or None
        if not Path(self.path).is_file():
            raise SourceConfigError(f"IAC_REPLAY_PATH: no such file: {self.path}")
        columns = _read_header(self.path)
        for setting, name in [
            ("IAC_REPLAY_TARGET", self.target),
            ("IAC_REPLAY_TIME_COLUMN", self.time_column),
            *[("IAC_REPLAY_CATEGORICAL_COLUMNS", c) for c in self.categorical],
        ]:
            if name is not None and name not in columns:
                raise SourceConfigError(_not_a_column(setting, name, columns))
        for column in self.categorical:
            if column in (self.target, self.time_column):
                role = "IAC_REPLAY_TARGET" if column == self.target else "IAC_REPLAY_TIME_COLUMN"
                raise SourceConfigError(
                    f"IAC_REPLAY_CATEGORICAL_COLUMNS: {column!r} is {role}, not a feature"
                )
        features = tuple(c for c in columns if c not in (self.target, self.time_column))
        if not features:
            raise SourceConfigError(f"IAC_REPLAY_PATH: {self.path} has no feature column")
        frame = self._frame()
        if frame.empty:
            raise SourceConfigError(f"IAC_REPLAY_PATH: {self.path} has no data row")
        for column in features:
            if column not in self.categorical and frame[column].dtype == object:
                if pd.to_numeric(frame[column], errors="coerce").notna().sum() == 0:
                    raise SourceConfigError(
                        f"IAC_REPLAY_CATEGORICAL_COLUMNS: column {column!r} holds no number; "
                        "declare it categorical"
                    )
        self.schema = Schema(
            features=features,
            categorical=self.categorical,
            target=self.target,
            classes=tuple(self.classes),
        )

    @property
    def name(self) -> str:
        """Stream identity: file name and batch size."""
        return f"replay:{Path(self.path).name}:n={self.batch_size}"

    @property
    def n_rows(self) -> int:
        """Data rows in the file (the header not counted)."""
        return len(self._frame())

    @property
    def n_batches(self) -> int:
        """Batches in one pass over the file."""
        return math.ceil(self.n_rows / self.batch_size)

    def data_row(self, position: int, row: int) -> int:
        """Where row ``row`` (0-based) of batch ``position`` is in the file.

        Returns:
            Its 1-based data row: the header is not counted, so data row ``n`` is line
            ``n + 1`` of a file without blank lines or multi-line cells.

        Raises:
            IndexError: the batch has no such row.
        """
        start = (position % self.n_batches) * self.batch_size
        if not 0 <= row < min(self.batch_size, self.n_rows - start):
            raise IndexError(f"batch {position} has no row {row}")
        return int(self._frame().index[start + row]) + 1

    def _frame(self) -> pd.DataFrame:
        text_columns = tuple(dict.fromkeys((self.target, *self.categorical)))
        return _load_csv(str(Path(self.path).resolve()), self.time_column, text_columns)

    def batch(self, position: int) -> pd.DataFrame:
        """Rows of batch ``position``; categorical columns and target as strings (or missing)."""
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        epoch, offset = divmod(position, self.n_batches)
        if epoch > 0 and not self.loop:
            raise StreamExhausted(
                f"{self.name}: stream ends after {self.n_batches} batches (IAC_REPLAY_LOOP=false)"
            )
        start = offset * self.batch_size
        rows = self._frame().iloc[start : start + self.batch_size]
        out = rows[[*self.schema.features, self.target]].reset_index(drop=True)
        # One stray text cell makes pandas read its whole column as text: parse it back
        # per batch, so only the batch holding that cell is affected (and rejected).
        for column in self.schema.numeric:
            if out[column].dtype == object:
                out[column] = _numbers_where_possible(out[column])
        # Strings, but a missing value stays missing (not the category "nan").
        for column in (*self.categorical, self.target):
            out[column] = (
                out[column].astype(object).where(out[column].isna(), out[column].astype(str))
            )
        return out


def build_source(settings: Settings) -> BatchSource:
    """The source named by ``IAC_DATA_SOURCE``, configured from ``settings``; ``serving``
    gives :class:`ia_continu.data.serving_source.ServingStream` (seed batches only: served
    batches are made by :func:`ia_continu.data.serving_source.ingest`).

    Raises:
        SourceConfigError: a replay setting names a missing file or column.
    """
    if settings.data_source == "serving":
        # The API's served traffic after the seed batches (imported here: it needs the
        # database tables, a plain replay does not).
        from ia_continu.data.serving_source import stream

        return stream(settings)
    if settings.data_source == "synthetic":
        return SyntheticSource(
            mode=settings.synthetic_mode,
            seed=settings.synthetic_seed,
            batch_size=settings.batch_size,
            period_batches=settings.synthetic_period_batches,
            label_noise=settings.synthetic_label_noise,
        )
    return ReplaySource(
        path=settings.replay_path,
        target=settings.replay_target,
        batch_size=settings.batch_size,
        time_column=settings.replay_time_column,
        categorical=tuple(settings.replay_categorical_columns),
        loop=settings.replay_loop,
        classes=tuple(settings.replay_classes),
    )
