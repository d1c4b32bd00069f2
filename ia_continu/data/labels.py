"""Ground truth from where a company keeps it: files dropped in an inbox, a SQL query.

Both end in :func:`ia_continu.data.storage.served.join_labels` (by ``prediction_id``,
idempotent, conflicts and unknown ids kept aside in ``quarantined_labels``).

The inbox (``IAC_LABELS_DIR``, default ``<IAC_DATA_DIR>/labels``) takes CSV and Parquet
files holding the columns ``IAC_LABELS_ID_COLUMN`` and ``IAC_LABELS_LABEL_COLUMN``
(others are ignored). :func:`ingest_inbox` processes each file once:

* names starting with ``.`` or ending ``.tmp``/``.part``/``.partial``/``.crdownload``
  are skipped (the safe way to drop a file is to write it under such a name, then rename);
  so is a file modified less than ``IAC_LABELS_SETTLE_SECONDS`` ago: it may still be
  being copied in, a later run takes it;
* the file's SHA-256 is recorded in ``label_files``: the same content again, under any
  name, changes nothing (``already_seen``) and goes to ``processed/``;
* a file that cannot be read, or lacks a column, is recorded as ``rejected`` with the
  error (file, column or line) and moved to ``rejected/``: nothing is deleted. Once the
  cause is fixed (a setting, a new export), moving it back into the inbox retries it;
* a processed file is recorded, its labels joined in the same transaction, then it is
  moved to ``processed/``. The database record decides: a crash between the commit
  and the move leaves the file in the inbox, where the next run recognises its content
  and only finishes the move.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pandas as pd
from loguru import logger
from sqlalchemy import Engine, Table, create_engine, insert, select, text, update
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, ProgrammingError

from ia_continu.data.storage.served import (
    IndexResult,
    JoinResult,
    index_predictions,
    join_labels,
    join_labels_in,
)
from ia_continu.data.storage.tables import LabelFileRow
from ia_continu.settings import Settings

#: File types read, by suffix (lower case).
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Names of files still being written by common copy tools; never read.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
PROCESSED_DIR = "processed"
REJECTED_DIR = "rejected"
#: ``label_files.status`` values.
PROCESSED = "processed"
REJECTED = "rejected"
LABEL_FILES = cast(Table, LabelFileRow.__table__)

_CSV_LINE = re.compile(r"\bline (\d+)\b")


class LabelFileError(ValueError):
    """A label file that cannot be used as a whole; the message names the file and the
    column (with its ``IAC_*`` setting) or the line/data row at fault."""


class LabelSourceError(ValueError):
    """The SQL label source is misconfigured; the message names the ``IAC_*`` setting."""


def _csv_problem(name: str, exc: Exception) -> str:
    # pandas counts file lines from 1 with the header; data rows do not count the header.
    message = str(exc).strip()
    match = _CSV_LINE.search(message)
    where = f" (data row {int(match[1]) - 1})" if match and int(match[1]) > 1 else ""
    return f"{name}: not a readable CSV file{where}: {message}"


def _read_csv(name: str, data: bytes) -> pd.DataFrame:
    try:
        # Text as-is: ids keep leading zeros, labels are compared as text; an empty cell
        # stays "" (reported as missing row by row), a utf-8 BOM (Excel) is dropped.
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise LabelFileError(f"{name}: empty file (no header line)") from None
    except UnicodeDecodeError as exc:
        raise LabelFileError(
            f"{name}: not UTF-8 text (byte {exc.start}): save the file as UTF-8 CSV"
        ) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise LabelFileError(_csv_problem(name, exc)) from None


def _read_parquet(name: str, data: bytes) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401  # the Parquet engine pandas uses
    except ImportError:
        raise LabelFileError(f"{name}: reading Parquet needs pyarrow; send CSV instead") from None
    try:
        # Nullable dtypes: an integer label column with gaps stays integer ("1", not "1.0").
        return pd.read_parquet(io.BytesIO(data), dtype_backend="numpy_nullable")
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ValueError...
        raise LabelFileError(
            f"{name}: not a readable Parquet file (truncated, still being copied, or not "
            f"Parquet): {type(exc).__name__}: {exc}"
        ) from None


def parse_labels(name: str, data: bytes, settings: Settings) -> pd.DataFrame:
    """:func:`read_label_file` on content already read (``name`` gives type and messages)."""
    suffix = Path(name).suffix.lower()
    if suffix in CSV_SUFFIXES:
        frame = _read_csv(name, data)
    elif suffix in PARQUET_SUFFIXES:
        frame = _read_parquet(name, data)
    else:
        accepted = ", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)
        raise LabelFileError(f"{name}: not a label file type (expected {accepted})")
    return _label_frame(frame, settings, name)


def _label_frame(frame: pd.DataFrame, settings: Settings, where: str) -> pd.DataFrame:
    """The id and label columns of ``frame`` renamed, with the 1-based data row."""
    columns = [str(c) for c in frame.columns]
    for column, setting in (
        (settings.labels_id_column, "IAC_LABELS_ID_COLUMN"),
        (settings.labels_label_column, "IAC_LABELS_LABEL_COLUMN"),
    ):
        if column not in columns:
            raise LabelFileError(
                f"{where}: no column {column!r} ({setting}); its columns are {columns[:20]}"
            )
    return pd.DataFrame(
        {
            "prediction_id": frame[settings.labels_id_column].astype(object).to_numpy(),
            "label": frame[settings.labels_label_column].astype(object).to_numpy(),
            "row": range(1, len(frame) + 1),
        }
    )


def read_label_file(path: Path, settings: Settings) -> pd.DataFrame:
    """Read a CSV or Parquet label file.

    Returns:
        Columns ``prediction_id`` and ``label`` (cells as read: CSV text, Parquet values;
        missing cells None/NA, checked row by row by ``join_labels``) and ``row`` (1-based
        data row: the n-th record after the header, blank lines not counted), one row
        per data row.

    Raises:
        LabelFileError: the file is missing, of another type, unreadable (truncated
            Parquet, malformed CSV: the line and data row are named) or lacks the
            ``IAC_LABELS_ID_COLUMN`` / ``IAC_LABELS_LABEL_COLUMN`` column (named).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse_labels(path.name, data, settings)


@dataclass(frozen=True)
class FileOutcome:
    """One inbox file this run handled: its counts, or its rejection ``error``."""

    name: str
    status: str
    result: JoinResult = field(default_factory=JoinResult)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: name, status, error and the join counts."""
        return {"file": self.name, "status": self.status, "error": self.error} | (
            self.result.to_dict()
        )


@dataclass(frozen=True)
class InboxResult:
    """What one :func:`ingest_inbox` run did.

    Attributes:
        index: the prediction indexing done first.
        files: processed and rejected files, in name order.
        waiting: names modified too recently (still being copied): a later run takes them.
        already_seen: names whose content was processed before (moved, nothing joined).
    """

    index: IndexResult
    files: tuple[FileOutcome, ...] = ()
    waiting: tuple[str, ...] = ()
    already_seen: tuple[str, ...] = ()

    @property
    def processed(self) -> tuple[FileOutcome, ...]:
        """The files read and joined."""
        return tuple(f for f in self.files if f.status == PROCESSED)

    @property
    def rejected(self) -> tuple[FileOutcome, ...]:
        """The files moved to ``rejected/``."""
        return tuple(f for f in self.files if f.status == REJECTED)

    @property
    def totals(self) -> JoinResult:
        """Counts over the processed files; ``resolved`` from the indexing."""
        total = JoinResult(resolved=self.index.resolved)
        for outcome in self.processed:
            total = total.plus(outcome.result)
        return total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``files_*`` counts, the join totals, the names, and ``index``."""
        return {
            "files_processed": len(self.processed),
            "files_rejected": len(self.rejected),
            "files_waiting": len(self.waiting),
            "files_already_seen": len(self.already_seen),
            **self.totals.to_dict(),
            "files": [f.to_dict() for f in self.files],
            "waiting": list(self.waiting),
            "already_seen": list(self.already_seen),
            "index": self.index.to_dict(),
        }


def _skipped(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES) or not path.is_file()


def _move(path: Path, directory: Path, sha256: str) -> Path:
    """Move ``path`` into ``directory`` without overwriting a file already there.

    Raises:
        OSError: the move failed; the file stays in the inbox and, its content being
            recorded, the next run only finishes the move.
    """
    directory.mkdir(exist_ok=True)
    target = directory / path.name
    if target.exists():
        target = directory / f"{path.stem}.{sha256[:12]}{path.suffix}"
    n = 1
    while target.exists():
        target = directory / f"{path.stem}.{sha256[:12]}.{n}{path.suffix}"
        n += 1
    return path.replace(target)


def _record(
    name: str, sha256: str, status: str, result: JoinResult, error: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "name": name[:1000],
        "sha256": sha256,
        "processed_at": now,
        "status": status,
        "error": error,
        "n_rows": result.rows,
        "joined": result.joined,
        "duplicates": result.duplicates,
        "conflicts": result.conflicts,
        "unknown": result.unknown,
        "invalid": result.invalid,
    }


def _ingest_file(
    path: Path, data: bytes, sha256: str, previous: str | None, settings: Settings, engine: Engine
) -> FileOutcome:
    """Parse, join and record one file in one transaction (``previous``: the status of an
    earlier record of the same content, a rejection being retried)."""
    now = datetime.now(UTC)
    try:
        frame: pd.DataFrame | None = parse_labels(path.name, data, settings)
        error = None
    except LabelFileError as exc:
        frame, error = None, str(exc)
    with engine.begin() as connection:
        if frame is not None:
            outcome = FileOutcome(
                path.name, PROCESSED, join_labels_in(connection, frame, path.name, now)
            )
        else:
            outcome = FileOutcome(path.name, REJECTED, error=error)
        values = _record(path.name, sha256, outcome.status, outcome.result, error, now)
        if previous is None:
            connection.execute(insert(LABEL_FILES), values)
        else:
            connection.execute(
                update(LABEL_FILES).where(LABEL_FILES.c.sha256 == sha256).values(values)
            )
    return outcome


def ingest_inbox(settings: Settings, engine: Engine, log_engine: Engine) -> InboxResult:
    """Index new served predictions, then process each new file of the label inbox once,
    in name order (see the module docstring for the rules).

    Args:
        settings: ``resolved_labels_dir`` (created if missing), the column names and
            ``labels_settle_seconds``.
        engine: the project database.
        log_engine: the prediction log's database.

    Returns:
        What happened to each file (:class:`InboxResult`).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: a database failed; files already recorded stay
            recorded, the others are retried by the next run.
        OSError: a file could not be read or moved (it stays in the inbox).
    """
    inbox = settings.resolved_labels_dir
    inbox.mkdir(parents=True, exist_ok=True)
    index = index_predictions(log_engine, engine)
    table = LABEL_FILES
    files: list[FileOutcome] = []
    waiting: list[str] = []
    seen: list[str] = []
    for path in sorted(inbox.iterdir()):
        if _skipped(path):
            continue
        try:
            if time.time() - path.stat().st_mtime < settings.labels_settle_seconds:
                waiting.append(path.name)
                continue
            data = path.read_bytes()
        except FileNotFoundError:  # an overlapping run took it meanwhile
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        with engine.connect() as connection:
            previous = connection.execute(
                select(table.c.status).where(table.c.sha256 == sha256)
            ).scalar()
        if previous == PROCESSED:
            seen.append(path.name)
            _move(path, inbox / PROCESSED_DIR, sha256)
            continue
        try:
            outcome = _ingest_file(path, data, sha256, previous, settings, engine)
        except IntegrityError:  # another run recorded the same content meanwhile
            seen.append(path.name)
            continue
        files.append(outcome)
        directory = PROCESSED_DIR if outcome.status == PROCESSED else REJECTED_DIR
        moved = _move(path, inbox / directory, sha256)
        if outcome.status == REJECTED:
            logger.warning("label file rejected, moved to {}: {}", moved, outcome.error)
    return InboxResult(index, tuple(files), tuple(waiting), tuple(seen))


def _source_engine(settings: Settings) -> Engine:
    assert settings.labels_sql_url is not None
    try:
        return create_engine(
            settings.labels_sql_url.get_secret_value(), hide_parameters=True, pool_pre_ping=True
        )
    except (ArgumentError, ValueError):
        # SQLAlchemy quotes the whole URL, password included: name the setting only.
        raise LabelSourceError("IAC_LABELS_SQL_URL is not a SQLAlchemy URL") from None
    except NoSuchModuleError as exc:
        raise LabelSourceError(f"IAC_LABELS_SQL_URL: unknown database dialect ({exc})") from None


def sql_configured(settings: Settings) -> bool:
    """Whether a SQL label source is set (either setting: half a source is an error)."""
    return settings.labels_sql_url is not None or bool(settings.labels_sql_query)


def read_sql_labels(settings: Settings) -> pd.DataFrame:
    """Run ``IAC_LABELS_SQL_QUERY`` on ``IAC_LABELS_SQL_URL``.

    Returns:
        Columns ``prediction_id``, ``label``, ``row`` (1-based result row).

    Raises:
        LabelSourceError: a setting is missing, the URL is malformed, the query fails
            (the driver's message) or its result lacks a column. Never quotes the URL.
        sqlalchemy.exc.OperationalError: the database cannot be reached (transient).
    """
    if settings.labels_sql_url is None or not settings.labels_sql_query:
        raise LabelSourceError(
            "IAC_LABELS_SQL_URL and IAC_LABELS_SQL_QUERY must be set together for a SQL "
            "label source"
        )
    source = _source_engine(settings)
    try:
        with source.connect() as connection:
            frame = pd.read_sql_query(
                text(settings.labels_sql_query), connection, dtype_backend="numpy_nullable"
            )
    except ProgrammingError as exc:
        raise LabelSourceError(f"IAC_LABELS_SQL_QUERY failed: {exc.orig}") from None
    finally:
        source.dispose()
    try:
        return _label_frame(frame, settings, "the result of IAC_LABELS_SQL_QUERY")
    except LabelFileError as exc:
        raise LabelSourceError(str(exc)) from None


def ingest_sql(settings: Settings, engine: Engine) -> JoinResult:
    """Join the labels returned by the SQL source (origin ``sql``).

    The query is re-run by every ingestion: labels already joined count as duplicates,
    entries already kept aside are not repeated. Keep it bounded (e.g. the last days).

    Raises:
        LabelSourceError: see :func:`read_sql_labels`.
        sqlalchemy.exc.SQLAlchemyError: a database failed (nothing was joined).
    """
    return join_labels(engine, read_sql_labels(settings), "sql")


def load_file(settings: Settings, path: Path) -> JoinResult:
    """Index new served predictions, then join one label file (origin ``cli:<name>``).

    The file is not moved nor recorded in ``label_files``: loading it again changes
    nothing (duplicates), and adds no second quarantine entry.

    Returns:
        The join counts; ``resolved`` counts earlier unknown ids joined by the indexing.

    Raises:
        LabelFileError: see :func:`read_label_file`.
        sqlalchemy.exc.SQLAlchemyError: a database failed.
    """
    from ia_continu.data.storage.engine import get_engine

    frame = read_label_file(path, settings)
    engine = get_engine(settings.resolved_database_url)
    index = index_predictions(get_engine(settings.resolved_prediction_log_database_url), engine)
    result = join_labels(engine, frame, f"cli:{path.name}")
    return result.plus(JoinResult(resolved=index.resolved))


def summarise(outcomes: Sequence[FileOutcome]) -> str:
    """``a.csv: 2 conflicts, 1 unknown; b.csv: rejected (...)`` for the files with
    something kept aside or rejected; empty when none."""
    parts = []
    for outcome in outcomes:
        if outcome.status == REJECTED:
            parts.append(f"{outcome.name}: rejected ({outcome.error})")
            continue
        counts = [
            f"{n} {what}"
            for n, what in (
                (outcome.result.conflicts, "conflicts"),
                (outcome.result.unknown, "unknown ids"),
                (outcome.result.invalid, "invalid rows"),
            )
            if n
        ]
        if counts:
            parts.append(f"{outcome.name}: {', '.join(counts)}")
    return "; ".join(parts)
