"""SQLAlchemy table definitions. Change them only together with an Alembic revision."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
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
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:  # noqa: ARG002
        return None if value is None else orjson.loads(value)


class PredictionLogRow(Base):
    """Predictions served by the API, one row per write (many requests per row).

    ``records`` holds one entry per request:
    ``[unix_time_s, request_id, model_name, model_version, rows, labels, probabilities]``
    where ``rows`` are the input rows (column -> value) and ``probabilities`` may be
    null. One JSON document per write keeps the API's writer thread cheap (a single
    encode instead of an ORM row per prediction); ``load_predictions`` expands it.
    """

    __tablename__ = "prediction_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    n_requests: Mapped[int] = mapped_column(Integer)
    n_rows: Mapped[int] = mapped_column(Integer)
    records: Mapped[list[list[Any]]] = mapped_column(CompactJSON)
