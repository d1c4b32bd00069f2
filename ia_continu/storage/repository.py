"""Reads and writes of batches and drift reports. Every write is one transaction."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ia_continu.sources import BatchSource
from ia_continu.storage.tables import BatchRow, DriftReportRow


@dataclass(frozen=True)
class BatchInfo:
    """Metadata of a persisted batch (without its rows)."""

    id: int
    source: str
    position: int
    n_rows: int
    created_at: datetime
    created: bool = True  # False when an earlier attempt with the same ingest key had stored it


def _info(row: BatchRow, created: bool = True) -> BatchInfo:
    return BatchInfo(row.id, row.source, row.position, row.n_rows, row.created_at, created)


def _to_json_rows(frame: pd.DataFrame) -> list[list[Any]]:
    rows = frame.astype(object).itertuples(index=False, name=None)
    return [[_native(v) for v in row] for row in rows]


def _native(value: Any) -> Any:
    # NaN is not valid JSON (PostgreSQL rejects it): store null instead.
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def ingest_next(engine: Engine, source: BatchSource, ingest_key: str | None = None) -> BatchInfo:
    """Persist the next batch of ``source`` exactly once.

    The next position is one past the highest stored for ``source.name``. If
    ``ingest_key`` (for example the flow run id) was already used, the batch stored by
    that earlier attempt is returned (``created=False``) and nothing is written, so a
    retried or re-run flow run never duplicates rows. A concurrent writer that took the
    same position makes the insert fail on the unique constraint; it is retried once.

    Returns:
        The stored batch's metadata.

    Raises:
        sources.StreamExhausted: the replayed stream is over and looping is off.
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    for attempt in range(2):
        with Session(engine) as session:
            if ingest_key is not None:
                existing = session.scalar(select(BatchRow).where(BatchRow.ingest_key == ingest_key))
                if existing is not None:
                    return _info(existing, created=False)
            last = session.scalar(
                select(func.max(BatchRow.position)).where(BatchRow.source == source.name)
            )
            position = 0 if last is None else last + 1
            frame = source.batch(position)
            row = BatchRow(
                source=source.name,
                position=position,
                n_rows=len(frame),
                ingest_key=ingest_key,
                created_at=datetime.now(UTC),
                columns=list(frame.columns),
                rows=_to_json_rows(frame),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                if attempt:
                    raise
                continue
            return _info(row)
    raise AssertionError("unreachable")  # pragma: no cover


def latest_batches(engine: Engine, source: str, n: int) -> list[BatchInfo]:
    """The ``n`` newest batches of ``source``, oldest first."""
    with Session(engine) as session:
        rows = session.scalars(
            select(BatchRow)
            .where(BatchRow.source == source)
            .order_by(BatchRow.position.desc())
            .limit(n)
        ).all()
        return [_info(r) for r in reversed(rows)]


def count_batches(engine: Engine, source: str | None = None) -> int:
    """Number of stored batches, of one source or of all."""
    query = select(func.count(BatchRow.id))
    if source is not None:
        query = query.where(BatchRow.source == source)
    with Session(engine) as session:
        return int(session.scalar(query) or 0)


def load_frame(engine: Engine, batch_ids: Sequence[int]) -> pd.DataFrame:
    """Rows of ``batch_ids`` concatenated in position order, with a ``batch_id`` column.

    Raises:
        KeyError: if a batch id is not stored.
    """
    if not batch_ids:
        raise ValueError("load_frame needs at least one batch id")
    with Session(engine) as session:
        rows = session.scalars(
            select(BatchRow).where(BatchRow.id.in_(list(batch_ids))).order_by(BatchRow.position)
        ).all()
        missing = set(batch_ids) - {r.id for r in rows}
        if missing:
            raise KeyError(f"batches not found: {sorted(missing)}")
        frames = [pd.DataFrame(r.rows, columns=r.columns).assign(batch_id=r.id) for r in rows]
    return pd.concat(frames, ignore_index=True)


def save_drift_report(
    engine: Engine,
    *,
    source: str,
    batch_id: int,
    champion_version: int | None,
    data_drift: bool,
    concept_drift: bool,
    retrain: bool,
    report: dict[str, Any],
    report_id: str | None = None,
) -> str:
    """Store a drift report and return its id (a UUID hex string).

    Passing the same ``report_id`` twice stores it once (idempotent retries).
    """
    report_id = report_id or uuid.uuid4().hex
    with Session(engine) as session:
        if session.get(DriftReportRow, report_id) is not None:
            return report_id
        session.add(
            DriftReportRow(
                id=report_id,
                created_at=datetime.now(UTC),
                source=source,
                batch_id=batch_id,
                champion_version=champion_version,
                data_drift=data_drift,
                concept_drift=concept_drift,
                retrain=retrain,
                report=report,
            )
        )
        session.commit()
    return report_id


def attach_mlflow_run(engine: Engine, report_id: str, run_id: str) -> None:
    """Record the MLflow run that logged report ``report_id``."""
    with Session(engine) as session:
        row = session.get(DriftReportRow, report_id)
        if row is None:
            raise KeyError(f"drift report not found: {report_id}")
        row.mlflow_run_id = run_id
        session.commit()


def latest_drift_flags(engine: Engine, source: str) -> dict[str, Any] | None:
    """Flags of the newest drift report of ``source`` (None if there is none)."""
    with Session(engine) as session:
        row = session.scalars(
            select(DriftReportRow)
            .where(DriftReportRow.source == source)
            .order_by(DriftReportRow.created_at.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return {
            "id": row.id,
            "data_drift": row.data_drift,
            "concept_drift": row.concept_drift,
            "champion_version": row.champion_version,
        }


def get_drift_report(engine: Engine, report_id: str) -> dict[str, Any]:
    """The stored report ``report_id`` with its flags.

    Raises:
        KeyError: if no such report exists.
    """
    with Session(engine) as session:
        row = session.get(DriftReportRow, report_id)
        if row is None:
            raise KeyError(f"drift report not found: {report_id}")
        return {
            "id": row.id,
            "created_at": row.created_at.isoformat(),
            "batch_id": row.batch_id,
            "champion_version": row.champion_version,
            "data_drift": row.data_drift,
            "concept_drift": row.concept_drift,
            "retrain": row.retrain,
            "mlflow_run_id": row.mlflow_run_id,
            "report": row.report,
        }
