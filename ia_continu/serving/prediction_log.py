"""Prediction log: every served prediction written to the project database, off the
request path.

Requests hand a record to a bounded queue (:meth:`PredictionLog.offer`, never blocks);
one writer thread drains it and inserts in batches. When the queue is full the
record is dropped and counted: serving latency wins over logging completeness.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from loguru import logger
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from ia_continu.storage.tables import PredictionRow

PREDICTIONS = PredictionRow.__table__.c.id.table  # the Core Table behind the ORM class


def _ignore(_rows: int) -> None:
    return None


@dataclass(frozen=True)
class PredictionRecord:
    """The predictions of one request (one or many rows)."""

    created_at: datetime
    request_id: str
    model_name: str
    model_version: int
    rows: list[dict[str, Any]]
    labels: list[Any]
    probabilities: list[float] | None


class PredictionLog:
    """Bounded queue + writer thread inserting :class:`PredictionRecord` batches.

    Args:
        engine: project database.
        max_queued: most requests waiting to be written; more are dropped.
        flush_seconds: longest wait before a partial batch is written.
        max_rows_per_write: rows per INSERT transaction.
        on_written / on_dropped / on_failed: called with a row count (metrics hooks).
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
    ):
        self._engine = engine
        self._queue: queue.Queue[PredictionRecord | None] = queue.Queue(max_queued)
        self._flush_seconds = flush_seconds
        self._max_rows = max_rows_per_write
        self._on_written, self._on_dropped, self._on_failed = on_written, on_dropped, on_failed
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

    def _write(self, records: list[PredictionRecord], n_rows: int) -> None:
        values = [
            {
                "created_at": r.created_at,
                "request_id": r.request_id,
                "model_name": r.model_name,
                "model_version": r.model_version,
                "features": row,
                "prediction": str(label),
                "probability": r.probabilities[i] if r.probabilities is not None else None,
            }
            for r in records
            for i, (row, label) in enumerate(zip(r.rows, r.labels, strict=True))
        ]
        try:
            # Core insert (executemany): about half the cost of the ORM bulk path.
            with self._engine.begin() as connection:
                connection.execute(insert(PREDICTIONS), values)
        except Exception as exc:  # the writer thread must survive a DB outage
            logger.error("prediction log write of {} rows failed: {}", n_rows, exc)
            self._on_failed(n_rows)
            return
        self._on_written(n_rows)


def load_predictions(
    engine: Engine, since: datetime | None = None, limit: int = 10_000
) -> pd.DataFrame:
    """Logged predictions, newest ``limit`` (after ``since``), oldest first.

    Returns:
        One row per prediction: the input columns, then ``prediction``,
        ``probability``, ``model_version`` and ``created_at`` (UTC). Empty frame if none.
        Feeds the drift detection of serving traffic against the reference window.
    """
    query = select(PredictionRow).order_by(PredictionRow.id.desc()).limit(limit)
    if since is not None:
        query = query.where(PredictionRow.created_at > since.astimezone(UTC))
    with Session(engine) as session:
        rows = list(session.scalars(query))[::-1]
    records = [
        {
            **row.features,
            "prediction": row.prediction,
            "probability": row.probability,
            "model_version": row.model_version,
            "created_at": row.created_at,
        }
        for row in rows
    ]
    return pd.DataFrame.from_records(records)
