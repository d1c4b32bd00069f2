"""Prediction log: every served prediction written to the project database, off the
request path.

Each request's record is ``[unix_time_s, request_id, model_name, model_version, rows,
labels, probabilities, ids]`` (:class:`PredictionRecord`); records written before ids
were logged have the first 7 items only, and readers give them :func:`default_ids`.

Requests hand a record to a bounded queue (:meth:`PredictionLog.offer`, never blocks);
one writer thread drains it and inserts in batches. When the queue is full the
record is dropped and counted: serving latency wins over logging completeness.
The same thread applies the retention (:func:`prune_predictions`): oldest writes
deleted by age and by number of predictions kept, a bounded amount per pass.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pandas as pd
from loguru import logger
from sqlalchemy import Engine, Table, delete, func, insert, select
from sqlalchemy.orm import Session

from ia_continu.data.storage.tables import PredictionLogRow

PREDICTION_LOG = cast(Table, PredictionLogRow.__table__)  # Core insert: no ORM per-row cost


def _ignore(_rows: int) -> None:
    return None


def default_ids(request_id: str, n_rows: int) -> list[str]:
    """The prediction ids of a request whose client sent none: ``[request_id]`` for one
    row, else ``request_id/0`` .. ``request_id/<n_rows - 1>``.

    The API gives a one-row batch (POST /predict/batch) ``request_id/0``; only records
    written before ids were logged (7-item records) rely on this rule.
    """
    if n_rows == 1:
        return [request_id]
    return [f"{request_id}/{i}" for i in range(n_rows)]


@dataclass(frozen=True)
class PredictionRecord:
    """The predictions of one request (one or many rows); ``created_at`` in Unix seconds.

    ``rows`` hold the model's input columns only; ``ids`` one prediction id per row
    (empty: :func:`default_ids`).

    Raises:
        ValueError: ``ids``, ``labels`` or ``probabilities`` not one per row.
    """

    created_at: float
    request_id: str
    model_name: str
    model_version: int
    rows: list[dict[str, Any]]
    labels: list[Any]
    probabilities: list[float] | None
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.rows)
        if not self.ids:
            object.__setattr__(self, "ids", default_ids(self.request_id, n))
        if not len(self.ids) == len(self.labels) == n or (
            self.probabilities is not None and len(self.probabilities) != n
        ):
            raise ValueError(
                f"request {self.request_id}: {n} rows but {len(self.ids)} ids, "
                f"{len(self.labels)} labels"
                + (
                    ""
                    if self.probabilities is None
                    else f", {len(self.probabilities)} probabilities"
                )
            )


@dataclass(frozen=True)
class Retention:
    """How much of the prediction log to keep.

    Attributes:
        max_age: writes whose newest prediction is older are deleted; None: no age limit.
        max_rows: predictions (input rows) kept, the newest; None: no limit. Whole
            writes are deleted, oldest first, so slightly fewer may remain.
        interval_seconds: time between two passes.
        batch_writes: writes (table rows) deleted per transaction.
        max_batches: transactions per pass: bounds one pass's work and lock time; a
            pass that hits it is followed by another after ``catch_up_seconds``.
        catch_up_seconds: pause before the next pass when one pass was not enough.
    """

    max_age: timedelta | None = timedelta(days=7)
    max_rows: int | None = 1_000_000
    interval_seconds: float = 60.0
    batch_writes: int = 500
    max_batches: int = 20
    catch_up_seconds: float = 1.0


@dataclass(frozen=True)
class PruneResult:
    """What one retention pass deleted: writes (table rows) and predictions in them;
    ``done`` is False when the pass stopped at its bound with more left to delete."""

    writes: int
    rows: int
    done: bool


def prune_predictions(
    engine: Engine, retention: Retention, now: datetime | None = None
) -> PruneResult:
    """Delete the oldest prediction-log writes beyond ``retention``, in short transactions.

    At most ``retention.max_batches`` transactions of ``retention.batch_writes`` writes
    each: a big backlog is worked off over several passes instead of one long lock.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed (what was deleted stays deleted).
    """
    now = now or datetime.now(UTC)
    writes = rows = 0
    batches = 0
    table = PREDICTION_LOG
    # Age: writes whose newest prediction is older than max_age (last_at is indexed).
    if retention.max_age is not None:
        cutoff = now - retention.max_age
        while True:
            if batches == retention.max_batches:
                return PruneResult(writes, rows, done=False)
            with engine.begin() as connection:
                doomed = connection.execute(
                    select(table.c.id, table.c.n_rows)
                    .where(table.c.last_at < cutoff)
                    .order_by(table.c.id)
                    .limit(retention.batch_writes)
                ).all()
                if doomed:
                    connection.execute(delete(table).where(table.c.id.in_([d.id for d in doomed])))
            batches += 1
            writes += len(doomed)
            rows += sum(d.n_rows for d in doomed)
            if len(doomed) < retention.batch_writes:
                break
    # Count: the oldest writes beyond max_rows predictions.
    if retention.max_rows is not None:
        with engine.connect() as connection:
            kept = connection.execute(select(func.coalesce(func.sum(table.c.n_rows), 0))).scalar()
        excess = int(kept or 0) - retention.max_rows
        while excess > 0 and batches < retention.max_batches:
            with engine.begin() as connection:
                oldest = connection.execute(
                    select(table.c.id, table.c.n_rows)
                    .order_by(table.c.id)
                    .limit(retention.batch_writes)
                ).all()
                ids: list[int] = []
                freed = 0
                for write in oldest:
                    if freed >= excess:
                        break
                    ids.append(write.id)
                    freed += write.n_rows
                if ids:
                    connection.execute(delete(table).where(table.c.id.in_(ids)))
            batches += 1
            writes += len(ids)
            rows += freed
            excess -= freed
            if not ids:
                break
        if excess > 0:
            return PruneResult(writes, rows, done=False)
    return PruneResult(writes, rows, done=True)


class PredictionLog:
    """Bounded queue + writer thread inserting :class:`PredictionRecord` batches.

    Args:
        engine: the prediction log's database (the project database by default).
        max_queued: most requests waiting to be written; more are dropped.
        flush_seconds: longest wait before a partial batch is written.
        max_rows_per_write: rows per INSERT transaction.
        on_written / on_dropped / on_failed: called with a row count (metrics hooks).
        retention: what to keep; the writer thread prunes every
            ``retention.interval_seconds``. None keeps everything.
        on_pruned: called with the number of predictions each pass deleted.
    """

    def __init__(
        self,
        engine: Engine,
        max_queued: int = 10_000,
        flush_seconds: float = 0.5,
        max_rows_per_write: int = 5_000,
        on_written: Callable[[int], None] = _ignore,
        on_dropped: Callable[[int], None] = _ignore,
        on_failed: Callable[[int], None] = _ignore,
        retention: Retention | None = None,
        on_pruned: Callable[[int], None] = _ignore,
    ):
        self._engine = engine
        self._queue: queue.Queue[PredictionRecord | None] = queue.Queue(max_queued)
        self._flush_seconds = flush_seconds
        self._max_rows = max_rows_per_write
        self._on_written, self._on_dropped, self._on_failed = on_written, on_dropped, on_failed
        self._retention = retention
        self._on_pruned = on_pruned
        self._next_prune = time.monotonic()  # first pass right after start
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._closing = threading.Event()
        self._started = False

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()
        self._started = True

    def offer(self, record: PredictionRecord) -> bool:
        """Queue ``record`` without blocking; False (and counted) if the queue is full."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._on_dropped(len(record.rows))
            return False
        return True

    def qsize(self) -> int:
        """Requests waiting to be written."""
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread (waits at most ``timeout`` s)."""
        if not self._started:
            return
        self._closing.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            logger.warning("prediction log still full at shutdown; queued rows are lost")
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        # One transaction per flush interval (or per max_rows_per_write rows), not per
        # request. After the first record the thread sleeps out the interval instead of
        # waiting on the queue: a consumer woken by every put() costs the request path
        # a thread switch and a GIL hand-off per request.
        stop = False
        while not stop:
            self._prune_if_due()
            try:
                item = self._queue.get(timeout=self._flush_seconds)
            except queue.Empty:
                continue
            self._closing.wait(self._flush_seconds)
            pending: list[PredictionRecord] = []
            rows = 0
            while True:
                if item is None:
                    stop = True
                else:
                    pending.append(item)
                    rows += len(item.rows)
                if rows >= self._max_rows:
                    self._write(pending, rows)
                    pending, rows = [], 0
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if pending:
                self._write(pending, rows)

    def _prune_if_due(self) -> None:
        retention = self._retention
        if retention is None or time.monotonic() < self._next_prune:
            return
        try:
            result = prune_predictions(self._engine, retention)
        except Exception as exc:  # the writer thread must survive a database outage
            logger.error("prediction log retention pass failed: {}", exc)
            self._next_prune = time.monotonic() + retention.interval_seconds
            return
        if result.rows:
            self._on_pruned(result.rows)
            logger.info(
                "prediction log retention: deleted {} predictions ({} writes){}",
                result.rows,
                result.writes,
                "" if result.done else ", more next pass",
            )
        pause = retention.interval_seconds if result.done else retention.catch_up_seconds
        self._next_prune = time.monotonic() + pause

    def _write(self, records: list[PredictionRecord], n_rows: int) -> None:
        first = min(r.created_at for r in records)
        last = max(r.created_at for r in records)
        values = {
            "first_at": datetime.fromtimestamp(first, UTC),
            "last_at": datetime.fromtimestamp(last, UTC),
            "n_requests": len(records),
            "n_rows": n_rows,
            "records": [
                [
                    r.created_at,
                    r.request_id,
                    r.model_name,
                    r.model_version,
                    r.rows,
                    r.labels,
                    r.probabilities,
                    r.ids,
                ]
                for r in records
            ],
        }
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(PREDICTION_LOG), values)
        except Exception as exc:  # the writer thread must survive a database outage
            logger.error("prediction log write of {} rows failed: {}", n_rows, exc)
            self._on_failed(n_rows)
            return
        self._on_written(n_rows)


def load_predictions(
    engine: Engine, since: datetime | None = None, limit: int = 10_000
) -> pd.DataFrame:
    """Logged predictions, the newest ``limit`` (made after ``since``), oldest first.

    Returns:
        One row per prediction: the input columns, then ``prediction``,
        ``probability``, ``model_name``, ``model_version``, ``request_id``,
        ``prediction_id`` and ``created_at`` (UTC). Empty frame if none. This is the
        serving traffic the drift detection can compare with the reference window.
        Records logged before ids were (7 items) get :func:`default_ids`.
    """
    query = select(PredictionLogRow.records).order_by(PredictionLogRow.id.desc())
    if since is not None:
        query = query.where(PredictionLogRow.last_at > since.astimezone(UTC))
    after = since.timestamp() if since is not None else float("-inf")
    expanded: list[dict[str, Any]] = []
    with Session(engine) as session:
        for records in session.scalars(query):
            chunk = []
            for record in records:
                created, request_id, model_name, version, rows, labels, probabilities = record[:7]
                if created <= after:
                    continue
                ids = record[7] if len(record) > 7 else default_ids(request_id, len(rows))
                for i, (row, label, prediction_id) in enumerate(
                    zip(rows, labels, ids, strict=True)
                ):
                    chunk.append(
                        {
                            **row,
                            "prediction": label,
                            "probability": probabilities[i] if probabilities else None,
                            "model_name": model_name,
                            "model_version": version,
                            "request_id": request_id,
                            "prediction_id": prediction_id,
                            "created_at": datetime.fromtimestamp(created, UTC),
                        }
                    )
            expanded[:0] = chunk
            if len(expanded) >= limit:
                break
    return pd.DataFrame.from_records(expanded[-limit:] if expanded else [])
