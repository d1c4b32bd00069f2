"""Reads and writes of batches, drift and serving reports. Every write is one transaction.

Batches are validated before anything is written (``ia_continu.data.validation``): a batch
that fails goes to ``quarantined_batches`` instead of ``batches``, taking its stream
position, so the stream moves past it once and the loop goes on.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ia_continu.data.sources import BatchSource
from ia_continu.data.storage.tables import (
    BatchRow,
    DriftReportRow,
    QuarantinedBatchRow,
    ServedPredictionRow,
    ServingReportRow,
)
from ia_continu.data.validation import MAX_STORED_FAILURES, Verdict, validate_batch
from ia_continu.monitoring.concept_drift import BatchScore, ErrorCount


@dataclass(frozen=True)
class BatchInfo:
    """Metadata of a persisted batch (without its rows)."""

    id: int
    source: str
    position: int
    n_rows: int
    created_at: datetime
    created: bool = True  # False when an earlier attempt with the same ingest key had stored it


@dataclass(frozen=True)
class QuarantinedBatch:
    """Metadata of a batch kept aside by validation (never trained on).

    Attributes:
        id: row id in ``quarantined_batches`` (not a batch id).
        reason: the first failures (columns, rows, rules), no cell value.
        failures: up to ``validation.MAX_STORED_FAILURES`` ``{"column", "row", "check"}``.
        created: False when an earlier attempt with the same ingest key had kept it aside.
    """

    id: int
    source: str
    position: int
    n_rows: int
    created_at: datetime
    reason: str
    failures: list[dict[str, Any]]
    created: bool = True


def _info(row: BatchRow, created: bool = True) -> BatchInfo:
    return BatchInfo(row.id, row.source, row.position, row.n_rows, row.created_at, created)


def _quarantine_info(row: QuarantinedBatchRow, created: bool = True) -> QuarantinedBatch:
    return QuarantinedBatch(
        row.id,
        row.source,
        row.position,
        row.n_rows,
        row.created_at,
        row.reason,
        list(row.failures),
        created,
    )


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


def _to_raw_rows(frame: pd.DataFrame) -> list[list[Any]]:
    # The rows of a rejected batch, kept whole: JSON has no infinity, so it is kept as
    # the text "inf"/"-inf" (what pandas.read_csv reads back as a float); NaN is null.
    rows = frame.astype(object).itertuples(index=False, name=None)
    return [[_raw_native(v) for v in row] for row in rows]


def _raw_native(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return _native(value)


def _next_position(session: Session, source: str) -> int:
    # Stored and quarantined batches share the stream's positions.
    last = [
        session.scalar(select(func.max(table.position)).where(table.source == source))
        for table in (BatchRow, QuarantinedBatchRow)
    ]
    known = [p for p in last if p is not None]
    return max(known) + 1 if known else 0


def row_info(
    row: BatchRow | QuarantinedBatchRow, created: bool = True
) -> BatchInfo | QuarantinedBatch:
    """The metadata of a stored or quarantined batch row."""
    if isinstance(row, QuarantinedBatchRow):
        return _quarantine_info(row, created)
    return _info(row, created)


def earlier_attempt(session: Session, ingest_key: str) -> BatchInfo | QuarantinedBatch | None:
    """What an earlier attempt with ``ingest_key`` stored or quarantined (``created``
    False), or None when that key never stored anything."""
    stored = session.scalar(select(BatchRow).where(BatchRow.ingest_key == ingest_key))
    if stored is not None:
        return _info(stored, created=False)
    held = session.scalar(
        select(QuarantinedBatchRow).where(QuarantinedBatchRow.ingest_key == ingest_key)
    )
    return _quarantine_info(held, created=False) if held is not None else None


def batch_row(
    source: str,
    position: int,
    frame: pd.DataFrame,
    verdict: Verdict,
    ingest_key: str | None,
) -> BatchRow | QuarantinedBatchRow:
    """The row (not yet added to a session) that stores ``frame`` at ``position``: in
    ``batches`` when ``verdict`` is valid, else in ``quarantined_batches`` with its reason
    and raw rows."""
    if verdict.valid:
        return BatchRow(
            source=source,
            position=position,
            n_rows=len(frame),
            ingest_key=ingest_key,
            created_at=datetime.now(UTC),
            columns=list(frame.columns),
            rows=_to_json_rows(frame),
        )
    return QuarantinedBatchRow(
        source=source,
        position=position,
        n_rows=len(frame),
        ingest_key=ingest_key,
        created_at=datetime.now(UTC),
        reason=verdict.reason,
        failures=[f.to_dict() for f in verdict.failures[:MAX_STORED_FAILURES]],
        columns=[str(c) for c in frame.columns],
        rows=_to_raw_rows(frame),
    )


class IngestResult(BaseModel):
    """The result of an ingestion (what ``generate`` returns).

    Attributes:
        batch_id: the stored batch, None when quarantined or (serving source) when no
            labelled prediction was old enough yet.
        source: stream name; ``position`` its position in the stream.
        n_rows: rows of the batch (0 when nothing was made).
        created: False when the ingest key had already stored (or quarantined) it.
        quarantined: the batch failed validation; ``quarantine_id`` then names it and
            ``reason`` the columns, rows and rules at fault (no values).
        labelled_share: serving source only: labelled share of the served predictions
            the batch consumed (0..1), None without served rows.
        served_rows: serving source only: served predictions consumed.
        late_labels: serving source only: labels that arrived after their prediction was
            batched (a rising count says ``IAC_LABEL_DELAY`` is too short).
    """

    model_config = ConfigDict(frozen=True)

    batch_id: int | None
    source: str
    position: int
    n_rows: int
    created: bool
    quarantined: bool = False
    quarantine_id: int | None = None
    reason: str | None = None
    labelled_share: float | None = None
    served_rows: int | None = None
    late_labels: int | None = None


def ingest_summary(
    info: BatchInfo | QuarantinedBatch,
    *,
    labelled_share: float | None = None,
    served_rows: int | None = None,
    late_labels: int | None = None,
) -> IngestResult:
    """The :class:`IngestResult` of a stored or quarantined batch, with the serving
    source's figures when given."""
    quarantined = isinstance(info, QuarantinedBatch)
    return IngestResult(
        batch_id=None if quarantined else info.id,
        source=info.source,
        position=info.position,
        n_rows=info.n_rows,
        created=info.created,
        quarantined=quarantined,
        quarantine_id=info.id if quarantined else None,
        reason=info.reason if isinstance(info, QuarantinedBatch) else None,
        labelled_share=labelled_share,
        served_rows=served_rows,
        late_labels=late_labels,
    )


def ingest_next(
    engine: Engine,
    source: BatchSource,
    ingest_key: str | None = None,
    *,
    min_rows: int = 1,
) -> BatchInfo | QuarantinedBatch:
    """Validate the next batch of ``source`` and persist it exactly once, in one transaction.

    The next position is one past the highest stored or quarantined for ``source.name``.
    The batch is validated against ``source.schema`` (``validation.validate_batch``,
    at least ``min_rows`` labelled rows) before anything is written: a valid batch goes
    to ``batches``, an invalid one to ``quarantined_batches`` with its reason and raw
    rows. Either way the position is taken once, so the next call moves on.

    If ``ingest_key`` (for example the flow run id) was already used, what that earlier
    attempt stored or quarantined is returned (``created=False``) and nothing is written,
    so a retried or re-run flow run never duplicates rows. A concurrent writer that took
    the same position makes the insert fail on the unique constraint; it is retried once.
    (A position's verdict depends only on its batch, and a source serves the same batch
    for a position every time, so two racing writers target the same table.)

    Returns:
        The stored batch's metadata, or the quarantined batch's.

    Raises:
        sources.StreamExhausted: the replayed stream is over and looping is off.
        sqlalchemy.exc.OperationalError: the database cannot be reached, is locked past
            the busy timeout, or is read-only (SQLite); nothing was written. Messages
            carry no row values (engines hide bound parameters).
    """
    for attempt in range(2):
        with Session(engine) as session:
            if ingest_key is not None:
                earlier = earlier_attempt(session, ingest_key)
                if earlier is not None:
                    return earlier
            position = _next_position(session, source.name)
            frame = source.batch(position)
            verdict = validate_batch(frame, source.schema, min_rows)
            row = batch_row(source.name, position, frame, verdict, ingest_key)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                if attempt:
                    raise
                continue
            return row_info(row)
    raise AssertionError("unreachable")  # pragma: no cover


def quarantined_batches(engine: Engine, source: str | None = None) -> list[QuarantinedBatch]:
    """Batches kept aside by validation, of one source or of all, oldest position first."""
    query = select(QuarantinedBatchRow).order_by(
        QuarantinedBatchRow.source, QuarantinedBatchRow.position
    )
    if source is not None:
        query = query.where(QuarantinedBatchRow.source == source)
    with Session(engine) as session:
        return [_quarantine_info(r) for r in session.scalars(query).all()]


def load_quarantined_frame(engine: Engine, quarantine_id: int) -> pd.DataFrame:
    """The raw rows of a quarantined batch, as served (infinities as the text ``inf``).

    Raises:
        KeyError: if no such quarantined batch exists.
    """
    with Session(engine) as session:
        row = session.get(QuarantinedBatchRow, quarantine_id)
        if row is None:
            raise KeyError(f"quarantined batch not found: {quarantine_id}")
        return pd.DataFrame(row.rows, columns=row.columns)


def stream_positions(engine: Engine, source: str) -> list[int]:
    """Positions taken in ``source``'s stream, stored and quarantined together, sorted.

    With exactly-once ingestion this is ``0, 1, …, n - 1``: no gap, no duplicate.
    """
    with Session(engine) as session:
        stored = session.scalars(select(BatchRow.position).where(BatchRow.source == source))
        held = session.scalars(
            select(QuarantinedBatchRow.position).where(QuarantinedBatchRow.source == source)
        )
        return sorted([*stored, *held])


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


@dataclass(frozen=True)
class DriftFlags:
    """The verdicts of a stored drift report (what the next report compares with)."""

    id: str
    data_drift: bool
    concept_drift: bool
    champion_version: int | None


def latest_drift_flags(engine: Engine, source: str) -> DriftFlags | None:
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
        return DriftFlags(row.id, row.data_drift, row.concept_drift, row.champion_version)


def champion_service(
    engine: Engine, source: str, champion_version: int, *, head: int = 12, tail: int = 17
) -> list[BatchScore]:
    """The champion's errors on batches it served, oldest first, from the drift reports.

    Only the first ``head`` and the last ``tail`` batches are read (a version that serves
    for months must not make every cycle read all its reports): the detector pools its
    reference from the first batches and looks for a change point among the recent ones,
    no further back than a training window reaches. One entry per batch (the first
    report of a batch evaluated twice); reports without an error count (no champion
    model, or written before the count was stored) are skipped.
    """
    scores: dict[int, BatchScore] = {}
    with Session(engine) as session:
        for order, limit in (
            (DriftReportRow.batch_id.asc(), head),
            (DriftReportRow.batch_id.desc(), tail),
        ):
            rows = session.execute(
                select(DriftReportRow.batch_id, DriftReportRow.report)
                .where(DriftReportRow.source == source)
                .where(DriftReportRow.champion_version == champion_version)
                .order_by(order, DriftReportRow.created_at)
                .limit(limit)
            ).all()
            for batch_id, report in rows:
                performance = (report or {}).get("performance") or {}
                if int(batch_id) in scores or performance.get("errors") is None:
                    continue
                if not performance.get("n"):
                    continue
                count = ErrorCount(int(performance["n"]), int(performance["errors"]))
                scores[int(batch_id)] = BatchScore(
                    int(batch_id), count, bool(performance.get("drift"))
                )
    return [scores[b] for b in sorted(scores)]


def cycles_since_retrain(engine: Engine, source: str) -> int | None:
    """Drift reports of ``source`` since the newest one that decided to retrain (this cycle
    not counted: the next report is cycle ``n + 1``); None when no report retrained yet."""
    with Session(engine) as session:
        last = session.scalar(
            select(func.max(DriftReportRow.batch_id))
            .where(DriftReportRow.source == source)
            .where(DriftReportRow.retrain.is_(True))
        )
        if last is None:
            return None
        later = session.scalar(
            select(func.count(func.distinct(DriftReportRow.batch_id)))
            .where(DriftReportRow.source == source)
            .where(DriftReportRow.batch_id > last)
        )
        return int(later or 0) + 1


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


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def save_serving_report(
    engine: Engine,
    *,
    source: str,
    champion_version: int | None,
    window_start: datetime,
    window_end: datetime,
    n_rows: int,
    labelled_rows: int,
    estimated_accuracy: float | None,
    estimated_lower: float | None,
    estimated_upper: float | None,
    reference_accuracy: float | None,
    data_drift: bool,
    prediction_drift: bool,
    report: dict[str, Any],
    report_id: str | None = None,
    created_at: datetime | None = None,
) -> str:
    """Store a serving report (``serving_reports``) and return its id (a UUID hex string).

    ``window_start``/``window_end`` bound the ``served_at`` of the window's ``n_rows``
    predictions, ``labelled_rows`` of which had ground truth; accuracies are 0..1.
    ``realised_accuracy`` is left null for :func:`fill_realised_accuracy`. Passing the
    same ``report_id`` twice stores it once (idempotent retries).
    """
    report_id = report_id or uuid.uuid4().hex
    with Session(engine) as session:
        if session.get(ServingReportRow, report_id) is not None:
            return report_id
        session.add(
            ServingReportRow(
                id=report_id,
                created_at=created_at or datetime.now(UTC),
                source=source,
                champion_version=champion_version,
                window_start=_utc(window_start),
                window_end=_utc(window_end),
                n_rows=n_rows,
                labelled_rows=labelled_rows,
                estimated_accuracy=estimated_accuracy,
                estimated_lower=estimated_lower,
                estimated_upper=estimated_upper,
                reference_accuracy=reference_accuracy,
                data_drift=data_drift,
                prediction_drift=prediction_drift,
                report=report,
            )
        )
        session.commit()
    return report_id


def fill_realised_accuracy(
    engine: Engine, label_delay: timedelta, now: datetime | None = None
) -> int:
    """Write the realised accuracy of serving reports whose labels have had time to land.

    A report qualifies once ``window_end <= now - label_delay`` and while its
    ``realised_rows`` is null (never filled). Its realised accuracy is the share of the
    labelled predictions served in ``[window_start, window_end]`` (by the report's
    champion version, when it names one: the predictions the estimate was about) whose
    served ``prediction`` equals the joined ``label`` (both text).
    ``realised_rows`` is the number of those labelled predictions; with none,
    ``realised_rows`` is 0 and ``realised_accuracy`` stays null ("no label came"). Each
    report is filled once: a label landing after ``label_delay`` does not change it, so
    the figure is the one the delay promised. All updates are one transaction; a
    second call changes nothing (idempotent).

    Args:
        engine: the project database.
        label_delay: how long labels may take (``IAC_LABEL_DELAY``).
        now: the time to judge by (default: now, UTC).

    Returns:
        Number of reports filled by this call.
    """
    cutoff = _utc(now or datetime.now(UTC)) - label_delay
    labelled = ServedPredictionRow.label.is_not(None)
    right = func.sum(
        case((ServedPredictionRow.prediction == ServedPredictionRow.label, 1), else_=0)
    )
    filled = 0
    with Session(engine) as session:
        due = session.scalars(
            select(ServingReportRow)
            .where(ServingReportRow.realised_rows.is_(None))
            .where(ServingReportRow.window_end <= cutoff)
            .order_by(ServingReportRow.created_at)
        ).all()
        for row in due:
            query = (
                select(func.count(), right)
                .where(labelled)
                .where(ServedPredictionRow.served_at >= row.window_start)
                .where(ServedPredictionRow.served_at <= row.window_end)
            )
            if row.champion_version is not None:
                query = query.where(ServedPredictionRow.model_version == row.champion_version)
            count, correct = session.execute(query).one()
            row.realised_rows = int(count or 0)
            row.realised_accuracy = int(correct or 0) / count if count else None
            filled += 1
        session.commit()
    return filled


def _serving_report(row: ServingReportRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": _utc(row.created_at).isoformat(),
        "source": row.source,
        "champion_version": row.champion_version,
        "window_start": _utc(row.window_start).isoformat(),
        "window_end": _utc(row.window_end).isoformat(),
        "n_rows": row.n_rows,
        "labelled_rows": row.labelled_rows,
        "estimated_accuracy": row.estimated_accuracy,
        "estimated_lower": row.estimated_lower,
        "estimated_upper": row.estimated_upper,
        "reference_accuracy": row.reference_accuracy,
        "realised_accuracy": row.realised_accuracy,
        "realised_rows": row.realised_rows,
        "data_drift": row.data_drift,
        "prediction_drift": row.prediction_drift,
        "report": row.report,
    }


def serving_reports(
    engine: Engine,
    limit: int = 20,
    *,
    source: str | None = None,
    realised_only: bool = False,
) -> list[dict[str, Any]]:
    """The newest serving reports, newest first, as JSON-ready dicts.

    Args:
        engine: the project database.
        limit: most reports returned.
        source: only this stream's reports (default: all).
        realised_only: only reports whose realised accuracy is known.

    Returns:
        Dicts with every ``serving_reports`` column (times as ISO 8601 UTC text).
    """
    query = select(ServingReportRow).order_by(ServingReportRow.created_at.desc()).limit(limit)
    if source is not None:
        query = query.where(ServingReportRow.source == source)
    if realised_only:
        query = query.where(ServingReportRow.realised_accuracy.is_not(None))
    with Session(engine) as session:
        return [_serving_report(r) for r in session.scalars(query).all()]
