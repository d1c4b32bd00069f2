"""SQLAlchemy table definitions. Change them only together with an Alembic revision."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base; ``Base.metadata`` is Alembic's target."""


class BatchRow(Base):
    """One ingested batch. ``(source, position)`` and ``ingest_key`` are unique."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("source", "position", name="uq_batches_source_position"),
        UniqueConstraint("ingest_key", name="uq_batches_ingest_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(200), index=True)
    position: Mapped[int] = mapped_column(Integer)
    n_rows: Mapped[int] = mapped_column(Integer)
    ingest_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    columns: Mapped[list[str]] = mapped_column(JSON)
    rows: Mapped[list[list[Any]]] = mapped_column(JSON)


class QuarantinedBatchRow(Base):
    """A batch that failed validation at ingest, kept aside: never trained on, never in a
    drift window. It takes its stream position like a stored batch, so the positions of
    ``batches`` and ``quarantined_batches`` of a source are unique and contiguous together.

    ``reason`` and ``failures`` name columns, rows and rules, never cell values; ``rows``
    keeps the batch as served (missing cells null, infinities as the text ``inf``/``-inf``)
    so nothing is lost.
    """

    __tablename__ = "quarantined_batches"
    __table_args__ = (
        UniqueConstraint("source", "position", name="uq_quarantined_batches_source_position"),
        UniqueConstraint("ingest_key", name="uq_quarantined_batches_ingest_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(200), index=True)
    position: Mapped[int] = mapped_column(Integer)
    n_rows: Mapped[int] = mapped_column(Integer)
    ingest_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)
    failures: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    columns: Mapped[list[str]] = mapped_column(JSON)
    rows: Mapped[list[list[Any]]] = mapped_column(JSON)


class DriftReportRow(Base):
    """One drift report: reference window vs current window, plus the champion's accuracy."""

    __tablename__ = "drift_reports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(200))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    champion_version: Mapped[int | None] = mapped_column(Integer)
    data_drift: Mapped[bool]
    concept_drift: Mapped[bool]
    retrain: Mapped[bool]
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))


class ApiTokenRow(Base):
    """A bearer token of the prediction API: only the SHA-256 of its secret is stored.

    The token shown once to the operator is ``iac_<id>_<secret>``; ``id`` finds the row,
    the secret's hash is compared in constant time.
    """

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("name", name="uq_api_tokens_name"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CompactJSON(TypeDecorator[Any]):
    """JSON kept as text and encoded by orjson: several times faster than the stdlib
    encoder on the large documents of the prediction log, whose writer shares the API's
    interpreter (and GIL) with the request path."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:  # noqa: ARG002
        """Encode ``value`` as JSON text; None stays NULL."""
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:  # noqa: ARG002
        """Decode the stored JSON text; NULL gives None."""
        return None if value is None else orjson.loads(value)


class PredictionLogRow(Base):
    """Predictions served by the API, one row per write (many requests per row).

    ``records`` holds one entry per request:
    ``[unix_time_s, request_id, model_name, model_version, rows, labels, probabilities, ids]``
    where ``rows`` are the input rows (the model's columns only), ``probabilities`` may
    be null and ``ids`` are the rows' prediction ids. Records written before revision
    0004 have no ``ids``: readers use ``prediction_log.default_ids``. One JSON document per write keeps the API's writer thread cheap (a single
    encode instead of an ORM row per prediction); ``load_predictions`` expands it.
    """

    __tablename__ = "prediction_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    n_requests: Mapped[int] = mapped_column(Integer)
    n_rows: Mapped[int] = mapped_column(Integer)
    records: Mapped[list[list[Any]]] = mapped_column(CompactJSON)


class ServedPredictionRow(Base):
    """One prediction the API served, indexed by its id so ground truth can be joined.

    Filled from the prediction log by ``ia_continu.data.storage.served.index_predictions``
    (the API keeps writing one cheap JSON document per write; the per-row index is
    built by the ``ingest_labels`` flow, off the request path). ``prediction_id`` is the
    client's ``prediction_id`` or ``<request_id>`` / ``<request_id>/<row>`` (batch).

    ``label`` is the ground truth as text, joined once (``labelled_at``, ``label_origin``
    say when and from where: file and data row, ``sql``, ``cli:<file>``). ``position``
    is the serving-stream position of the batch (or quarantined batch) that consumed the
    row: null while the row is not yet old enough (``IAC_LABEL_DELAY``) to be batched.
    """

    __tablename__ = "served_predictions"

    prediction_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    write_id: Mapped[int] = mapped_column(Integer, index=True)
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int] = mapped_column(Integer)
    features: Mapped[dict[str, Any]] = mapped_column(CompactJSON)
    prediction: Mapped[str] = mapped_column(String(200))
    probability: Mapped[float | None]
    label: Mapped[str | None] = mapped_column(String(200))
    labelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    label_origin: Mapped[str | None] = mapped_column(String(500))
    position: Mapped[int | None] = mapped_column(Integer, index=True)


class LabelFileRow(Base):
    """A label file seen in the inbox (``IAC_LABELS_DIR``): processed exactly once.

    ``sha256`` of the content is unique, so the same file dropped again (same or other
    name) is recognised and changes nothing. ``status`` is ``processed`` or ``rejected``
    (``error`` names the file, the column or row and the rule).
    """

    __tablename__ = "label_files"
    __table_args__ = (UniqueConstraint("sha256", name="uq_label_files_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    n_rows: Mapped[int] = mapped_column(Integer)
    joined: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    conflicts: Mapped[int] = mapped_column(Integer)
    unknown: Mapped[int] = mapped_column(Integer)
    invalid: Mapped[int] = mapped_column(Integer)


class QuarantinedLabelRow(Base):
    """A label kept aside, with its reason: never joined silently, never dropped.

    ``reason`` is ``unknown_id`` (no served prediction has this id yet: retried by
    every later ingestion, ``resolved_at`` set once it joins), ``conflict`` (the
    prediction already has another label: the first stays), or ``invalid`` (missing or
    malformed id or label). ``origin`` and ``row`` name the file (or ``sql``) and its
    1-based data row.
    """

    __tablename__ = "quarantined_labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    origin: Mapped[str] = mapped_column(String(500))
    row: Mapped[int | None] = mapped_column(Integer)
    prediction_id: Mapped[str | None] = mapped_column(String(128), index=True)
    label: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(20), index=True)
    detail: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ServingReportRow(Base):
    """One look at the newest served predictions, labelled or not (every serving cycle).

    ``window_start``/``window_end`` bound the ``served_at`` of its ``n_rows``
    predictions; ``labelled_rows`` had ground truth when the report was made. The
    CBPE estimate of the champion's accuracy (``estimated_*``, 0..1) is written then;
    ``realised_accuracy`` and ``realised_rows`` are filled by a later cycle, once the
    window is older than ``IAC_LABEL_DELAY`` and its labels have had time to land.
    ``report`` holds the serving drift (inputs, predicted class, probability).
    """

    __tablename__ = "serving_reports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(200))
    champion_version: Mapped[int | None] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    n_rows: Mapped[int] = mapped_column(Integer)
    labelled_rows: Mapped[int] = mapped_column(Integer)
    estimated_accuracy: Mapped[float | None] = mapped_column(Float)
    estimated_lower: Mapped[float | None] = mapped_column(Float)
    estimated_upper: Mapped[float | None] = mapped_column(Float)
    reference_accuracy: Mapped[float | None] = mapped_column(Float)
    realised_accuracy: Mapped[float | None] = mapped_column(Float)
    realised_rows: Mapped[int | None] = mapped_column(Integer)
    data_drift: Mapped[bool]
    prediction_drift: Mapped[bool]
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
