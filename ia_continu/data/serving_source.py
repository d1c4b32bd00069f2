"""The serving source (``IAC_DATA_SOURCE=serving``): batches made of the API's own traffic.

The stream ``serving:<IAC_REGISTERED_MODEL_NAME>`` starts with ``IAC_SERVING_SEED_BATCHES``
batches of the seed source (``IAC_SERVING_SEED_SOURCE``, positions ``0..k-1`` of it), so a
first champion can be trained; it also gives the stream its columns (``Schema``). After
the seed, each position is made from ``served_predictions`` (filled from the prediction
log by ``ia_continu.data.storage.served``): the oldest predictions not yet consumed and served
at least ``IAC_LABEL_DELAY`` ago, at most ``IAC_BATCH_SIZE`` of them. The labelled ones
(ground truth joined by the ``ingest_labels`` flow) form the batch: the features as the
API served them, the label mapped back to the seed schema's class type. The batch is
validated like any other (``ia_continu.data.validation``) and stored or quarantined, and every
selected prediction, labelled or not, is marked with the position in the same
transaction: each prediction is consumed exactly once, and a crash leaves both or
neither.

The label delay is a trade-off the operator sets: a prediction is batched once, so a
label arriving after its prediction was consumed never reaches training (it is counted
in ``late_labels``). A rising count says ``IAC_LABEL_DELAY`` is shorter than labels take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ia_continu.data.sources import BatchSource, Schema, build_source
from ia_continu.data.storage import repository
from ia_continu.data.storage.engine import get_engine
from ia_continu.data.storage.tables import BatchRow, QuarantinedBatchRow, ServedPredictionRow
from ia_continu.data.validation import validate_batch
from ia_continu.settings import Settings

#: Prediction ids per ``UPDATE ... WHERE prediction_id IN (...)``: well under SQLite's
#: bound-parameter limit (32766 since 3.32, 999 before), whatever ``IAC_BATCH_SIZE`` is.
_IDS_PER_UPDATE = 500

#: Columns of :func:`serving_window` after the schema's features.
WINDOW_COLUMNS = ("prediction", "probability", "label", "served_at", "model_version")


def source_name(settings: Settings) -> str:
    """Name of the serving stream: ``serving:<IAC_REGISTERED_MODEL_NAME>``.

    Its batches (seed and served) share one sequence of positions under this name.
    """
    return f"serving:{settings.registered_model_name}"


def seed_source(settings: Settings) -> BatchSource:
    """The seed source (``IAC_SERVING_SEED_SOURCE``) built with the same ``IAC_REPLAY_*`` /
    ``IAC_SYNTHETIC_*`` / ``IAC_BATCH_SIZE`` settings as when it is the data source.

    Raises:
        sources.SourceConfigError: a replay setting names a missing file or column.
    """
    return build_source(settings.model_copy(update={"data_source": settings.serving_seed_source}))


def schema(settings: Settings) -> Schema:
    """Column roles of the serving stream: the seed source's (features, target, classes).

    Raises:
        sources.SourceConfigError: as :func:`seed_source`.
    """
    return seed_source(settings).schema


@dataclass
class ServingStream:
    """The serving stream seen as a ``BatchSource``: its name, its schema, and the seed
    batches of its first ``seed_batches`` positions.

    Later positions are not a function of the position (they are made from the served
    predictions by :func:`ingest`), so :meth:`batch` refuses them.
    """

    seed: BatchSource
    stream_name: str
    seed_batches: int

    @property
    def name(self) -> str:
        """Stream identity: ``serving:<registered model name>``."""
        return self.stream_name

    @property
    def schema(self) -> Schema:
        """The seed source's column roles."""
        return self.seed.schema

    def batch(self, position: int) -> pd.DataFrame:
        """Seed batch ``position`` (``0 <= position < seed_batches``).

        Raises:
            ValueError: ``position`` is negative or past the seed.
            sources.StreamExhausted: a replayed seed file is shorter than the seed.
        """
        if not 0 <= position < self.seed_batches:
            raise ValueError(
                f"{self.stream_name}: position {position} is not a seed position (0.."
                f"{self.seed_batches - 1}); later positions are made from served "
                "predictions by serving_source.ingest"
            )
        return self.seed.batch(position)


def stream(settings: Settings) -> ServingStream:
    """The serving stream of ``settings`` (name, schema, seed batches).

    Raises:
        sources.SourceConfigError: as :func:`seed_source`.
    """
    return ServingStream(
        seed_source(settings), source_name(settings), settings.serving_seed_batches
    )


def _utc(moment: datetime | None) -> datetime:
    # SQLite stores the wall time without its offset: compare in UTC, what the index writes.
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _seconds(settings: Settings) -> str:
    return f"{settings.label_delay.total_seconds():g} s"


def _class_map(schema: Schema) -> dict[str, Any]:
    # Labels are joined as text; the schema's classes may be ints (synthetic: 0, 1).
    return {str(c): c for c in schema.classes}


def labelled_frame(rows: Sequence[ServedPredictionRow], schema: Schema) -> pd.DataFrame:
    """The batch made of labelled served predictions, in the order given.

    Args:
        rows: served predictions whose ``label`` is set.
        schema: the stream's column roles.

    Returns:
        ``schema.features`` (from each row's ``features`` as served; a feature the row
        lacks is NaN, so validation names it) + ``schema.target``: the label text mapped
        to the class it spells when ``schema.classes`` are known (``"1"`` -> ``1``),
        else kept as text, so an unknown label is reported by validation.
    """
    features = [r.features if isinstance(r.features, dict) else {} for r in rows]
    frame = pd.DataFrame(features, columns=list(schema.features), index=range(len(rows)))
    classes = _class_map(schema)
    labels = [classes.get(str(r.label), r.label) for r in rows]
    known = all(str(r.label) in classes for r in rows)
    # All known classes: the class type (int64 for 0/1); otherwise object, for validation.
    frame[schema.target] = pd.Series(labels, dtype=None if known else object)
    return frame


class _Consumed(RuntimeError):
    """Another ingestion consumed some of the selected predictions first."""


def _consume(session: Session, ids: Sequence[str], position: int) -> None:
    """Mark ``ids`` as consumed by ``position``, inside the caller's transaction.

    Raises:
        _Consumed: one of them already had a position (a concurrent ingestion).
    """
    changed = 0
    for start in range(0, len(ids), _IDS_PER_UPDATE):
        chunk = list(ids[start : start + _IDS_PER_UPDATE])
        result = session.execute(
            update(ServedPredictionRow)
            .where(ServedPredictionRow.prediction_id.in_(chunk))
            .where(ServedPredictionRow.position.is_(None))
            .values(position=position)
            .execution_options(synchronize_session=False)
        )
        changed += int(getattr(result, "rowcount", 0) or 0)
    if changed != len(ids):
        raise _Consumed(f"{len(ids) - changed} of {len(ids)} predictions consumed meanwhile")


def late_labels(engine: Engine, settings: Settings) -> int:
    """Consumed predictions whose label arrived after they were batched, in total so far.

    Every prediction labelled when its position was made is a row of that position's
    batch (stored or quarantined), so the late ones are the labelled consumed
    predictions beyond the rows of the batches at their positions. Counting this way
    needs no timestamp, and also covers predictions skipped for want of any label.
    """
    name = source_name(settings)
    with Session(engine) as session:
        labelled = session.scalar(
            select(func.count())
            .select_from(ServedPredictionRow)
            .where(ServedPredictionRow.position.is_not(None))
            .where(ServedPredictionRow.label.is_not(None))
        )
        served_positions = (
            select(ServedPredictionRow.position)
            .where(ServedPredictionRow.position.is_not(None))
            .distinct()
            .scalar_subquery()
        )
        batched = 0
        for table in (BatchRow, QuarantinedBatchRow):
            batched += int(
                session.scalar(
                    select(func.coalesce(func.sum(table.n_rows), 0))
                    .where(table.source == name)
                    .where(table.position.in_(served_positions))
                )
                or 0
            )
    return max(int(labelled or 0) - batched, 0)


def _position_counts(session: Session, position: int) -> tuple[int, int]:
    """(served predictions consumed by ``position``, of which labelled now)."""
    served, labelled = session.execute(
        select(func.count(), func.count(ServedPredictionRow.label)).where(
            ServedPredictionRow.position == position
        )
    ).one()
    return int(served), int(labelled)


def _result(
    info: repository.BatchInfo | repository.QuarantinedBatch,
    *,
    served_rows: int,
    late: int,
) -> repository.IngestResult:
    return repository.ingest_summary(
        info,
        # A batch holds exactly the predictions labelled when it was made.
        labelled_share=info.n_rows / served_rows if served_rows else None,
        served_rows=served_rows,
        late_labels=late,
    )


def _nothing(
    name: str, position: int, reason: str, served: int, late: int
) -> repository.IngestResult:
    return repository.IngestResult(
        batch_id=None,
        source=name,
        position=position,
        n_rows=0,
        created=False,
        reason=reason,
        labelled_share=0.0 if served else None,
        served_rows=served,
        late_labels=late,
    )


def ingest(
    settings: Settings, ingest_key: str | None = None, now: datetime | None = None
) -> repository.IngestResult:
    """Make the next position of the serving stream, exactly once (I/O).

    Positions below ``IAC_SERVING_SEED_BATCHES`` are the seed source's batches, stored
    by ``repository.ingest_next``. Later ones are made from the oldest served
    predictions with ``served_at <= now - IAC_LABEL_DELAY`` and no position yet (at
    most ``IAC_BATCH_SIZE``, ordered by ``served_at`` then ``prediction_id``): the
    labelled ones form the batch (:func:`labelled_frame`), validated with
    ``IAC_MIN_BATCH_ROWS`` and stored or quarantined; all selected predictions get the
    position, in the same transaction.

    When none of the selected predictions is labelled, they are still consumed (else
    they would block the stream forever) and nothing is stored: they take the position
    the next batch will have, which counts them among its ``served_rows``.

    Args:
        settings: ``IAC_*`` settings; the database is ``settings.resolved_database_url``.
        ingest_key: the flow run id: a retry with the same key returns what the first
            attempt stored or quarantined (``created`` False) and writes nothing. An
            attempt that stored nothing (no eligible or no labelled prediction) leaves
            no trace of its key, so its retry makes the next position if one is due.
        now: the clock (UTC when naive); the current time when None.

    Returns:
        The :class:`~ia_continu.data.storage.repository.IngestResult`, with
        ``served_rows`` (served predictions the position consumed: 0 for a seed batch),
        ``labelled_share`` (``n_rows / served_rows``, 0..1; None for a seed batch or
        when nothing was eligible) and ``late_labels`` (:func:`late_labels`). With
        nothing stored, ``batch_id`` is None, ``created`` and ``quarantined`` are
        False, ``position`` is the next position, and ``reason`` says why.

    Raises:
        sources.SourceConfigError: a seed setting is wrong.
        sources.StreamExhausted: a replayed seed file has fewer batches than the seed
            and looping is off.
        sqlalchemy.exc.OperationalError: the database is unreachable, locked or
            read-only; nothing was written.
    """
    engine = get_engine(settings.resolved_database_url)
    serving = stream(settings)
    with Session(engine) as session:
        earlier = None if ingest_key is None else repository.earlier_attempt(session, ingest_key)
        if earlier is not None:
            served, _ = _position_counts(session, earlier.position)
            return _result(earlier, served_rows=served, late=late_labels(engine, settings))
        position = repository._next_position(session, serving.name)
    if position < settings.serving_seed_batches:
        info = repository.ingest_next(engine, serving, ingest_key, min_rows=settings.min_batch_rows)
        return _result(info, served_rows=0, late=late_labels(engine, settings))
    return _ingest_served(engine, settings, serving, ingest_key, _utc(now))


def _ingest_served(
    engine: Engine,
    settings: Settings,
    serving: ServingStream,
    ingest_key: str | None,
    now: datetime,
) -> repository.IngestResult:
    cutoff = now - settings.label_delay
    for attempt in range(2):
        with Session(engine) as session:
            selected = session.scalars(
                select(ServedPredictionRow)
                .where(ServedPredictionRow.position.is_(None))
                .where(ServedPredictionRow.served_at <= cutoff)
                .order_by(ServedPredictionRow.served_at, ServedPredictionRow.prediction_id)
                .limit(settings.batch_size)
            ).all()
            position = repository._next_position(session, serving.name)
            if not selected:
                waiting = session.scalar(
                    select(func.count())
                    .select_from(ServedPredictionRow)
                    .where(ServedPredictionRow.position.is_(None))
                )
                return _nothing(
                    serving.name,
                    position,
                    f"no served prediction older than IAC_LABEL_DELAY ({_seconds(settings)}) "
                    f"yet; {int(waiting or 0)} waiting",
                    0,
                    late_labels(engine, settings),
                )
            labelled = [r for r in selected if r.label is not None]
            ids = [r.prediction_id for r in selected]
            row: BatchRow | QuarantinedBatchRow | None = None
            if labelled:
                row = _batch_row(settings, serving, labelled, position, ingest_key)
                session.add(row)
            try:
                session.flush()
                _consume(session, ids, position)
                served, _ = _position_counts(session, position)
                session.commit()
            except (IntegrityError, _Consumed):
                # A concurrent ingestion took this position or these predictions: look again.
                session.rollback()
                if attempt:
                    raise
                continue
            late = late_labels(engine, settings)
            if row is None:
                return _nothing(
                    serving.name,
                    position,
                    f"{len(selected)} served predictions older than IAC_LABEL_DELAY "
                    f"({_seconds(settings)}), none labelled: they are skipped "
                    f"(position {position})",
                    len(selected),
                    late,
                )
            info = repository.row_info(row)
            return _result(info, served_rows=served, late=late)
    raise AssertionError("unreachable")  # pragma: no cover


def _batch_row(
    settings: Settings,
    serving: ServingStream,
    labelled: Sequence[ServedPredictionRow],
    position: int,
    ingest_key: str | None,
) -> BatchRow | QuarantinedBatchRow:
    """The stored (valid) or quarantined batch of ``labelled`` at ``position``."""
    frame = labelled_frame(labelled, serving.schema)
    verdict = validate_batch(frame, serving.schema, settings.min_batch_rows)
    return repository.batch_row(serving.name, position, frame, verdict, ingest_key)


def serving_window(settings: Settings, engine: Engine, now: datetime | None = None) -> pd.DataFrame:
    """The newest ``resolved_serving_window_rows`` served predictions, labelled or not.

    Args:
        settings: gives the window size and the schema (:func:`schema`).
        engine: the database holding ``served_predictions``.
        now: only predictions served at or before it (UTC when naive); None: all.

    Returns:
        Oldest first (``served_at``, then ``prediction_id``): ``schema.features`` as
        served (a feature a row lacks is NaN) + ``prediction`` (text) +
        ``probability`` (float, NaN when the model gave none) + ``label`` (text, None
        while not joined) + ``served_at`` (UTC timestamps) + ``model_version`` (int).
        Empty (those columns, no row) when nothing was served.

    Raises:
        sources.SourceConfigError: as :func:`seed_source`.
    """
    features = list(schema(settings).features)
    query = select(
        ServedPredictionRow.features,
        ServedPredictionRow.prediction,
        ServedPredictionRow.probability,
        ServedPredictionRow.label,
        ServedPredictionRow.served_at,
        ServedPredictionRow.model_version,
    )
    if now is not None:
        query = query.where(ServedPredictionRow.served_at <= _utc(now))
    query = query.order_by(
        ServedPredictionRow.served_at.desc(), ServedPredictionRow.prediction_id.desc()
    ).limit(settings.resolved_serving_window_rows)
    with Session(engine) as session:
        rows = list(reversed(session.execute(query).all()))
    frame = pd.DataFrame(
        [r.features if isinstance(r.features, dict) else {} for r in rows],
        columns=features,
        index=range(len(rows)),
    )
    frame["prediction"] = pd.Series([r.prediction for r in rows], dtype=object)
    frame["probability"] = pd.Series([r.probability for r in rows], dtype=float)
    frame["label"] = pd.Series([r.label for r in rows], dtype=object)
    frame["served_at"] = pd.to_datetime(pd.Series([r.served_at for r in rows]), utc=True)
    frame["model_version"] = pd.Series([r.model_version for r in rows], dtype="int64")
    return frame


def label_coverage(window: pd.DataFrame) -> float | None:
    """Share of the window's predictions that have a label (0..1); None for an empty
    window (:func:`serving_window`)."""
    if window.empty:
        return None
    return float(window["label"].notna().mean())
