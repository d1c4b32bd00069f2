"""The served-prediction index and the ground-truth join.

``index_predictions`` copies the API's prediction log (one JSON document per write,
``PredictionLogRow``) into ``served_predictions``, one row per prediction keyed by its
``prediction_id``, off the request path. ``join_labels`` then sets the ground truth of
those rows, once:

* a label for a prediction that has none is joined (``label``, ``labelled_at``,
  ``label_origin``);
* the same label again is a *duplicate*: counted, nothing changes;
* another label is a *conflict*: the first label stays, the new one is kept aside in
  ``quarantined_labels`` (reason ``conflict``);
* an id no served prediction has (yet) is kept aside as ``unknown_id`` and joined by a
  later ``index_predictions`` once that prediction is indexed (``resolved_at``);
* a missing or malformed id or label is kept aside as ``invalid``.

Labels are text (``str(value)``, stripped) and compared as text, like the served
``prediction``. Nothing is dropped silently: every input row lands in exactly one of
joined, duplicates, conflicts, unknown, invalid.

Quarantine entries are not repeated: an input that is read again (a SQL query re-run
every ingestion, a file loaded twice from the CLI) adds an entry only beyond the
unresolved ones already kept for the same origin, reason, id and label.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import pandas as pd
from loguru import logger
from sqlalchemy import Connection, Engine, Table, bindparam, delete, func, insert, select, update

from ia_continu.data.storage.tables import (
    PredictionLogRow,
    QuarantinedLabelRow,
    ServedPredictionRow,
)
from ia_continu.serving.prediction_log import default_ids

SERVED = cast(Table, ServedPredictionRow.__table__)
QUARANTINE = cast(Table, QuarantinedLabelRow.__table__)
PREDICTION_LOG = cast(Table, PredictionLogRow.__table__)

#: Quarantine reasons (``quarantined_labels.reason``).
UNKNOWN_ID = "unknown_id"
CONFLICT = "conflict"
INVALID = "invalid"
REASONS = (UNKNOWN_ID, CONFLICT, INVALID)

#: Every id the API can serve: a client's ``prediction_id`` (``ia_continu.serving.signature``)
#: or a default id built from ``X-Request-ID`` (``api.middleware``, which may start with
#: ``.`` or ``-``) plus ``/<row>``. Anything else cannot name a served prediction.
ID_PATTERN = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
#: Width of ``served_predictions.label`` / ``quarantined_labels.label``.
MAX_LABEL_CHARS = 200
#: Width of ``label_origin`` / ``quarantined_labels.origin``.
MAX_ORIGIN_CHARS = 500
#: Bound parameters per ``IN (...)`` query: far below SQLite's and PostgreSQL's limits.
CHUNK = 500
#: Columns ``join_labels`` reads.
LABEL_COLUMNS = ("prediction_id", "label", "row")

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class IndexResult:
    """What one :func:`index_predictions` pass did.

    Attributes:
        writes: prediction-log writes (table rows) read.
        predictions: served predictions added to ``served_predictions``.
        duplicates: predictions whose id was already indexed (the first one is kept).
        resolved: labels kept aside as ``unknown_id`` that found their prediction.
        unreadable: log records that could not be expanded (logged with their write id;
            they stay in the prediction log).
    """

    writes: int = 0
    predictions: int = 0
    duplicates: int = 0
    resolved: int = 0
    unreadable: int = 0

    def to_dict(self) -> dict[str, int]:
        """JSON-ready counts."""
        return asdict(self)


@dataclass(frozen=True)
class JoinResult:
    """Counts of one :func:`join_labels` call; ``rows`` is the sum of the next five.

    Attributes:
        rows: input rows.
        joined: labels set on a prediction that had none.
        duplicates: the label the prediction already had (no change).
        conflicts: another label than the prediction's (or than an earlier row of the same
            input for that id): kept aside, the first label stays.
        unknown: ids no served prediction has yet: kept aside, retried by later indexing.
        invalid: missing or malformed id or label: kept aside.
        resolved: earlier ``unknown_id`` labels that found their prediction during the
            same operation (filled by callers that index first).
    """

    rows: int = 0
    joined: int = 0
    duplicates: int = 0
    conflicts: int = 0
    unknown: int = 0
    invalid: int = 0
    resolved: int = 0

    @property
    def quarantined(self) -> int:
        """Rows kept aside: conflicts + unknown + invalid."""
        return self.conflicts + self.unknown + self.invalid

    def plus(self, other: JoinResult) -> JoinResult:
        """Field-wise sum (totals over several inputs)."""
        mine, theirs = asdict(self), asdict(other)
        return JoinResult(**{key: mine[key] + theirs[key] for key in mine})

    def to_dict(self) -> dict[str, int]:
        """JSON-ready counts."""
        return asdict(self)


@dataclass(frozen=True)
class LabelCounts:
    """Ground-truth coverage of the served predictions.

    Attributes:
        predictions: indexed served predictions.
        labelled: of them, with a joined label.
        quarantined: unresolved quarantine entries by reason (every reason present).
        resolved: ``unknown_id`` entries that later joined.
    """

    predictions: int
    labelled: int
    quarantined: dict[str, int] = field(default_factory=dict)
    resolved: int = 0

    @property
    def unlabelled(self) -> int:
        """Predictions still without ground truth."""
        return self.predictions - self.labelled

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts, ``unlabelled`` included."""
        return {**asdict(self), "unlabelled": self.unlabelled}


@dataclass(frozen=True)
class QuarantinedLabel:
    """One ``quarantined_labels`` row (see ``QuarantinedLabelRow``)."""

    id: int
    received_at: datetime
    origin: str
    row: int | None
    prediction_id: str | None
    label: str | None
    reason: str
    detail: str
    resolved_at: datetime | None


def _log_ids(request_id: str, n_rows: int, ids: Any) -> list[str]:
    """The prediction ids of one logged request: the record's own (8-item record), else
    the default rule of 7-item records: ``request_id`` for one row, ``request_id/i``."""
    if isinstance(ids, list) and len(ids) == n_rows:
        return [str(i) for i in ids]
    return default_ids(request_id, n_rows)


def _expand_record(write_id: int, record: list[Any]) -> list[dict[str, Any]]:
    """``served_predictions`` rows of one logged request, in served order."""
    created, request_id, model_name, version, rows, labels, probabilities = record[:7]
    ids = _log_ids(str(request_id), len(rows), record[7] if len(record) > 7 else None)
    served_at = datetime.fromtimestamp(created, UTC)
    out = []
    for i, (row, label, prediction_id) in enumerate(zip(rows, labels, ids, strict=True)):
        probability = probabilities[i] if probabilities else None
        out.append(
            {
                "prediction_id": prediction_id,
                "write_id": write_id,
                "served_at": served_at,
                "request_id": str(request_id),
                "model_name": model_name,
                "model_version": int(version),
                "features": row,
                "prediction": str(label),
                "probability": None if probability is None else float(probability),
            }
        )
    return out


def _insert_ignoring_duplicates(connection: Connection, table: Table) -> Any:
    """An INSERT that skips rows whose primary key exists (two ingestions racing), on the
    dialects that have it; elsewhere a plain INSERT (the caller filtered known keys)."""
    name = connection.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    return insert(table)


def _existing_labels(
    connection: Connection, ids: Sequence[str], lock: bool = False
) -> dict[str, str | None]:
    """``prediction_id -> label`` of the indexed predictions among ``ids``.

    ``lock`` takes row locks (``SELECT ... FOR UPDATE``, PostgreSQL) so a concurrent join
    cannot set a label between this read and the write; SQLite has one writer at a time
    and fails the later one (retried) instead.
    """
    found: dict[str, str | None] = {}
    for chunk in _chunks(ids):
        query = select(SERVED.c.prediction_id, SERVED.c.label).where(
            SERVED.c.prediction_id.in_(chunk)
        )
        if lock:
            query = query.with_for_update()
        found.update(connection.execute(query).tuples().all())
    return found


def _set_labels(connection: Connection, labels: list[dict[str, Any]]) -> None:
    """Bulk ``UPDATE``: ``{"pid", "label", "at", "origin"}`` on rows still unlabelled."""
    if not labels:
        return
    statement = (
        update(SERVED)
        .where(SERVED.c.prediction_id == bindparam("pid"), SERVED.c.label.is_(None))
        .values(label=bindparam("lab"), labelled_at=bindparam("at"), label_origin=bindparam("org"))
    )
    connection.execute(
        statement,
        [{"pid": x["pid"], "lab": x["label"], "at": x["at"], "org": x["origin"]} for x in labels],
    )


def _label_origin(origin: str, row: int | None) -> str:
    where = origin if row is None else f"{origin} row {row}"
    return where[:MAX_ORIGIN_CHARS]


def resolve_unknown(connection: Connection, now: datetime | None = None) -> int:
    """Join the unresolved ``unknown_id`` labels whose prediction is now indexed.

    Oldest entry first: it joins when the prediction has no label yet; one equal to the
    prediction's label is simply resolved; one with another label is resolved and kept
    aside again as a ``conflict`` naming its origin and row (the first label stays).

    Returns:
        The number of entries marked ``resolved_at``.
    """
    now = now or datetime.now(UTC)
    pending = connection.execute(
        select(
            QUARANTINE.c.id,
            QUARANTINE.c.prediction_id,
            QUARANTINE.c.label,
            QUARANTINE.c.origin,
            QUARANTINE.c.row,
            SERVED.c.label.label("current"),
        )
        .join(SERVED, SERVED.c.prediction_id == QUARANTINE.c.prediction_id)
        .where(QUARANTINE.c.reason == UNKNOWN_ID, QUARANTINE.c.resolved_at.is_(None))
        .order_by(QUARANTINE.c.id)
    ).all()
    if not pending:
        return 0
    current: dict[str, str | None] = {}
    joins: list[dict[str, Any]] = []
    conflicts: list[dict[str, Any]] = []
    for entry in pending:
        have = current.get(entry.prediction_id, entry.current)
        if have is None:
            current[entry.prediction_id] = entry.label
            joins.append(
                {
                    "pid": entry.prediction_id,
                    "label": entry.label,
                    "at": now,
                    "origin": _label_origin(entry.origin, entry.row),
                }
            )
        elif have != entry.label:
            conflicts.append(
                {
                    "received_at": now,
                    "origin": entry.origin,
                    "row": entry.row,
                    "prediction_id": entry.prediction_id,
                    "label": entry.label,
                    "reason": CONFLICT,
                    "detail": f"label {entry.label!r} (kept aside as unknown_id, entry "
                    f"{entry.id}) differs from {have!r} already joined",
                    "resolved_at": None,
                }
            )
    _set_labels(connection, joins)
    if conflicts:
        connection.execute(insert(QUARANTINE), conflicts)
    ids = [entry.id for entry in pending]
    for chunk in _chunks(ids):
        connection.execute(
            update(QUARANTINE).where(QUARANTINE.c.id.in_(chunk)).values(resolved_at=now)
        )
    return len(ids)


def index_predictions(log_engine: Engine, engine: Engine, max_writes: int = 1000) -> IndexResult:
    """Copy new prediction-log writes into ``served_predictions``, then resolve the
    ``unknown_id`` labels whose prediction has arrived.

    Reads at most ``max_writes`` writes with ``id`` above the highest ``write_id``
    already indexed, oldest first (the rest waits for the next call). Records of 8 items
    carry their ids; older 7-item records get the default ids (``request_id`` for a
    one-row request, else ``request_id/i``). ``prediction`` is stored as ``str(label)``.
    A ``prediction_id`` already indexed keeps its first row and is counted as duplicate.
    One transaction on ``engine``.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: a database failed (nothing was written).
    """
    now = datetime.now(UTC)
    with engine.connect() as connection:
        last = connection.execute(select(func.max(SERVED.c.write_id))).scalar()
    with log_engine.connect() as connection:
        writes = connection.execute(
            select(PREDICTION_LOG.c.id, PREDICTION_LOG.c.records)
            .where(PREDICTION_LOG.c.id > (last if last is not None else -1))
            .order_by(PREDICTION_LOG.c.id)
            .limit(max_writes)
        ).all()
    rows: dict[str, dict[str, Any]] = {}
    duplicates = unreadable = 0
    for write_id, records in writes:
        for k, entry in enumerate(records or []):
            try:
                expanded = _expand_record(write_id, entry)
            except (TypeError, ValueError, IndexError, OverflowError) as exc:
                # One corrupt record must not stop the index for good: say where it is.
                unreadable += 1
                logger.warning(
                    "prediction log write {} record {} not indexed: {}: {}",
                    write_id,
                    k,
                    type(exc).__name__,
                    exc,
                )
                continue
            for row in expanded:
                if row["prediction_id"] in rows:
                    duplicates += 1
                else:
                    rows[row["prediction_id"]] = row
    with engine.begin() as connection:
        known = _existing_labels(connection, list(rows))
        duplicates += len(known)
        new = [row for pid, row in rows.items() if pid not in known]
        statement = _insert_ignoring_duplicates(connection, SERVED)
        for chunk in _chunks(new, 5_000):
            connection.execute(statement, list(chunk))
        resolved = resolve_unknown(connection, now)
    return IndexResult(
        writes=len(writes),
        predictions=len(new),
        duplicates=duplicates,
        resolved=resolved,
        unreadable=unreadable,
    )


def _text(value: Any) -> str | None:
    """A cell as stripped text; None when missing (None, NaN, NA) or blank."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):  # a list or array cell: not missing
        pass
    text = str(value).strip()
    return text or None


def _invalid_reason(prediction_id: str | None, label: str | None) -> str | None:
    if prediction_id is None:
        return "missing prediction id"
    if not ID_PATTERN.match(prediction_id):
        return (
            f"malformed prediction id ({len(prediction_id)} characters; expected 1-128 "
            "letters, digits or . _ : / -)"
        )
    if label is None:
        return "missing label"
    if len(label) > MAX_LABEL_CHARS:
        return f"label longer than {MAX_LABEL_CHARS} characters ({len(label)})"
    return None


def _new_entries(
    connection: Connection, origin: str, entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``entries`` less as many of each (reason, id, label) as the origin already has
    unresolved: re-reading the same input adds no second copy of an entry."""
    if not entries:
        return []
    held = Counter(
        {
            (reason, pid, label): n
            for reason, pid, label, n in connection.execute(
                select(
                    QUARANTINE.c.reason,
                    QUARANTINE.c.prediction_id,
                    QUARANTINE.c.label,
                    func.count(),
                )
                .where(QUARANTINE.c.origin == origin, QUARANTINE.c.resolved_at.is_(None))
                .group_by(QUARANTINE.c.reason, QUARANTINE.c.prediction_id, QUARANTINE.c.label)
            )
        }
    )
    kept = []
    for entry in entries:
        key = (entry["reason"], entry["prediction_id"], entry["label"])
        if held[key] > 0:
            held[key] -= 1
        else:
            kept.append(entry)
    return kept


def join_labels_in(
    connection: Connection, labels: pd.DataFrame, origin: str, now: datetime | None = None
) -> JoinResult:
    """:func:`join_labels` inside the caller's transaction (e.g. with the ``label_files``
    record of the same file, so that both are written or neither)."""
    now = now or datetime.now(UTC)
    origin = origin[:MAX_ORIGIN_CHARS]
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"labels frame lacks columns {missing}; expected {list(LABEL_COLUMNS)}")
    ids = [_text(v) for v in labels["prediction_id"].tolist()]
    values = [_text(v) for v in labels["label"].tolist()]
    rows = [None if _text(r) is None else int(r) for r in labels["row"].tolist()]

    entries: list[dict[str, Any]] = []

    def keep(reason: str, i: int, detail: str) -> None:
        label = values[i]
        entries.append(
            {
                "received_at": now,
                "origin": origin,
                "row": rows[i],
                "prediction_id": (ids[i] or "")[:128] or None,
                "label": label[:MAX_LABEL_CHARS] if label is not None else None,
                "reason": reason,
                "detail": detail,
                "resolved_at": None,
            }
        )

    def at(i: int) -> str:
        return f"row {rows[i]}" if rows[i] is not None else "a row"

    invalid = duplicates = conflicts = 0
    first: dict[str, int] = {}  # id -> index of its first valid row in this input
    for i, (pid, label) in enumerate(zip(ids, values, strict=True)):
        problem = _invalid_reason(pid, label)
        if problem is not None:
            invalid += 1
            keep(INVALID, i, f"{at(i)}: {problem}")
            continue
        assert pid is not None
        j = first.setdefault(pid, i)
        if j == i:
            continue
        if values[j] == label:
            duplicates += 1
        else:
            conflicts += 1
            keep(
                CONFLICT,
                i,
                f"{at(i)}: label {label!r} differs from {values[j]!r} given for the same id "
                f"at {at(j)} of the same input (the first is used)",
            )

    known = _existing_labels(connection, list(first), lock=True)
    joins: list[dict[str, Any]] = []
    unknown = 0
    for pid, i in first.items():
        label = values[i]
        if pid not in known:
            unknown += 1
            keep(UNKNOWN_ID, i, f"{at(i)}: no served prediction has this id (yet)")
        elif known[pid] is None:
            joins.append(
                {"pid": pid, "label": label, "at": now, "origin": _label_origin(origin, rows[i])}
            )
        elif known[pid] == label:
            duplicates += 1
        else:
            conflicts += 1
            keep(
                CONFLICT,
                i,
                f"{at(i)}: label {label!r} differs from {known[pid]!r} already joined "
                "(the first label stays)",
            )
    _set_labels(connection, joins)
    fresh = _new_entries(connection, origin, entries)
    if fresh:
        connection.execute(insert(QUARANTINE), fresh)
    return JoinResult(
        rows=len(ids),
        joined=len(joins),
        duplicates=duplicates,
        conflicts=conflicts,
        unknown=unknown,
        invalid=invalid,
    )


def join_labels(engine: Engine, labels: pd.DataFrame, origin: str) -> JoinResult:
    """Join ground truth to served predictions by id, idempotently, in one transaction.

    Args:
        engine: the project database.
        labels: columns ``prediction_id``, ``label`` (any type: compared as stripped text)
            and ``row`` (1-based data row of the input, or None), one row per label.
        origin: where the labels come from: a file name, ``sql``, ``cli:<file>``; with the
            row it names each quarantine entry and ``label_origin``.

    Returns:
        The counts (see :class:`JoinResult`); ``resolved`` is 0 (indexing resolves).

    Raises:
        ValueError: ``labels`` lacks one of the three columns.
        sqlalchemy.exc.SQLAlchemyError: the database failed (nothing was written).
    """
    with engine.begin() as connection:
        return join_labels_in(connection, labels, origin)


def label_counts(engine: Engine) -> LabelCounts:
    """Served predictions, how many are labelled, unresolved quarantine entries by reason."""
    with engine.connect() as connection:
        total, labelled = connection.execute(select(func.count(), func.count(SERVED.c.label))).one()
        by_reason = dict.fromkeys(REASONS, 0)
        for reason, n in connection.execute(
            select(QUARANTINE.c.reason, func.count())
            .where(QUARANTINE.c.resolved_at.is_(None))
            .group_by(QUARANTINE.c.reason)
        ):
            by_reason[reason] = n
        resolved = connection.execute(
            select(func.count()).where(QUARANTINE.c.resolved_at.is_not(None))
        ).scalar_one()
    return LabelCounts(
        predictions=int(total), labelled=int(labelled), quarantined=by_reason, resolved=resolved
    )


def quarantined_labels(
    engine: Engine,
    reason: str | None = None,
    include_resolved: bool = False,
    limit: int = 1000,
) -> list[QuarantinedLabel]:
    """Quarantine entries, oldest first: one ``reason`` or all, unresolved unless asked."""
    query = select(QUARANTINE).order_by(QUARANTINE.c.id).limit(limit)
    if reason is not None:
        query = query.where(QUARANTINE.c.reason == reason)
    if not include_resolved:
        query = query.where(QUARANTINE.c.resolved_at.is_(None))
    with engine.connect() as connection:
        return [QuarantinedLabel(**row._mapping) for row in connection.execute(query)]


def prune_served(engine: Engine, older_than: datetime, max_rows: int = 50_000) -> int:
    """Delete served predictions already batched (``position`` set) and served before
    ``older_than``, at most ``max_rows`` per call, oldest first; returns how many.

    Rows of the newest indexed write are always kept: :func:`index_predictions` resumes
    after the highest ``write_id`` present, which must never go back.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed (nothing deleted).
    """
    with engine.begin() as connection:
        newest = connection.execute(select(func.max(SERVED.c.write_id))).scalar()
        if newest is None:
            return 0
        doomed = (
            select(SERVED.c.prediction_id)
            .where(SERVED.c.position.is_not(None))
            .where(SERVED.c.served_at < older_than.astimezone(UTC))
            .where(SERVED.c.write_id < newest)
            .order_by(SERVED.c.served_at)
            .limit(max_rows)
        )
        ids = list(connection.execute(doomed).scalars())
        for chunk in _chunks(ids):
            connection.execute(delete(SERVED).where(SERVED.c.prediction_id.in_(chunk)))
    return len(ids)
