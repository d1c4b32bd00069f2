"""Factories for served traffic: prediction-log writes, served predictions (as the
prediction-log index writes them), label files in the inbox, label quarantine entries and
serving reports."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from ia_continu.data import serving_source
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import (
    PredictionLogRow,
    QuarantinedLabelRow,
    ServedPredictionRow,
    ServingReportRow,
)
from ia_continu.settings import Settings
from ia_continu.training import registry

# --- the prediction log ----------------------------------------------------------------

RECORD_TIME = 1_800_000_000.0
"""Default serving time of a :func:`record`, in Unix seconds (2027-01-15 08:00 UTC)."""


def record(
    request_id: str,
    labels: list[Any],
    ids: list[str] | None = None,
    created: float = RECORD_TIME,
    version: int = 1,
) -> list[Any]:
    """A prediction-log record of model ``clf`` version ``version``, served at ``created``
    (Unix seconds): one input row ``{"x": i, "c": "a"}`` and one probability
    ``0.5 + 0.01 i`` per item of ``labels`` (the predicted classes).

    Returns:
        The 8-item record ``[time, request_id, model, version, rows, labels,
        probabilities, ids]`` with ``ids``, the old 7-item form (no ids) without.
    """
    rows = [{"x": float(i), "c": "a"} for i in range(len(labels))]
    probabilities = [0.5 + 0.01 * i for i in range(len(labels))]
    base = [created, request_id, "clf", version, rows, labels, probabilities]
    return base if ids is None else [*base, ids]


def log_write(engine: Engine, *records: list[Any]) -> None:
    """Insert one prediction-log write (one ``prediction_log`` row) holding ``records``
    (from :func:`record`), with the time span and counts the API's writer sets."""
    created = [r[0] for r in records]
    with engine.begin() as connection:
        connection.execute(
            insert(PredictionLogRow),
            {
                "first_at": datetime.fromtimestamp(min(created), UTC),
                "last_at": datetime.fromtimestamp(max(created), UTC),
                "n_requests": len(records),
                "n_rows": sum(len(r[4]) for r in records),
                "records": list(records),
            },
        )


def served_rows(engine: Engine) -> dict[str, Any]:
    """Every ``served_predictions`` row (a SQLAlchemy ``Row`` with the table's columns),
    keyed by prediction id."""
    with engine.connect() as connection:
        return {
            row.prediction_id: row
            for row in connection.execute(select(ServedPredictionRow.__table__))
        }


# --- served predictions ----------------------------------------------------------------


def serve_model(
    settings: Settings,
    model: Any,
    position: int,
    at: datetime,
    *,
    version: int,
    n: int | None = None,
    labelled: bool = True,
    shift: dict[str, float] | None = None,
) -> None:
    """Insert ``model``'s predictions (as version ``version`` of the registered model) on
    the first ``n`` rows (all with None) of the seed source's batch ``position``, served
    from ``at`` on, 1 ms apart, with ids ``p<position>-<i>``.

    ``labelled`` joins the batch's targets as labels (origin ``"test"``, labelled at
    ``at``); ``shift`` adds a constant to numeric features (a covariate shift) before
    the model sees them.
    """
    seed = serving_source.seed_source(settings)
    rows = seed.batch(position)
    if n is not None:
        rows = rows.head(n)
    features = rows[list(seed.schema.features)].copy()
    for column, delta in (shift or {}).items():
        features[column] = features[column] + delta
    proba = model.predict_proba(features)
    best = proba.argmax(axis=1)
    with Session(migrate(settings.resolved_database_url)) as session:
        for i, inputs in enumerate(features.to_dict(orient="records")):
            label = str(rows[seed.schema.target].iloc[i]) if labelled else None
            session.add(
                ServedPredictionRow(
                    prediction_id=f"p{position}-{i}",
                    write_id=1,
                    served_at=at + timedelta(milliseconds=i),
                    request_id=f"r{position}-{i}",
                    model_name=settings.registered_model_name,
                    model_version=version,
                    features=inputs,
                    prediction=str(model.classes_[best[i]]),
                    probability=float(proba[i, best[i]]),
                    label=label,
                    labelled_at=at if labelled else None,
                    label_origin="test" if labelled else None,
                )
            )
        session.commit()


def serve_champion(
    settings: Settings,
    n: int,
    at: datetime,
    *,
    position: int = 3,
    labelled: bool = True,
    shift: dict[str, float] | None = None,
) -> None:
    """Insert ``n`` predictions of the champion on the seed source's batch ``position``
    (served from ``at`` on, 1 ms apart), labelled with the batch's targets or not;
    ``shift`` adds a constant to numeric features (a covariate shift).

    Raises:
        AssertionError: the registered model has no champion.
    """
    client = registry.client(settings.mlflow_tracking_uri)
    champion = registry.get_alias(client, settings.registered_model_name)
    assert champion is not None, "no champion to serve"
    model = registry.load_model(champion.uri, settings.mlflow_tracking_uri)
    serve_model(
        settings,
        model,
        position,
        at,
        version=champion.version,
        n=n,
        labelled=labelled,
        shift=shift,
    )


# --- the label inbox -------------------------------------------------------------------


def settled(path: Path, age: float = 60.0) -> Path:
    """Set ``path``'s access and modification times ``age`` seconds in the past (older
    than the default 2 s settle time: a finished copy). Returns ``path``."""
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def drop_label_file(settings: Settings, name: str, content: str | bytes, age: float = 60.0) -> Path:
    """Write ``content`` (text or bytes) as ``name`` into the label inbox
    (``settings.resolved_labels_dir``, created if missing), modified ``age`` seconds ago
    (0 for a file still being copied). Returns the file's path."""
    inbox = settings.resolved_labels_dir
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return settled(path, age)


# --- what the console reads ------------------------------------------------------------

SERVING_START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
"""When the first stored serving report's window ends and the first prediction is served."""

ServingReportPlan = tuple[int, float, float | None, bool]
"""One serving report: labelled rows of 100, estimated accuracy, realised accuracy (None
before labels), data drift."""


def store_serving_reports(engine: Engine, plan: list[ServingReportPlan], version: int = 2) -> None:
    """One serving report per item of ``plan``, a minute apart from
    :data:`SERVING_START`, inserted in reverse time order (the history must sort them);
    100 rows per one-minute window, interval ±0.05 around the estimate, reference 0.85,
    realised on the labelled rows, champion ``version``, source ``serving:ui-model``."""
    with Session(engine) as session:
        for i, (labelled, estimated, realised, drifted) in reversed(list(enumerate(plan))):
            created = SERVING_START + timedelta(minutes=i)
            session.add(
                ServingReportRow(
                    id=uuid4().hex,
                    created_at=created,
                    source="serving:ui-model",
                    champion_version=version,
                    window_start=created - timedelta(minutes=1),
                    window_end=created,
                    n_rows=100,
                    labelled_rows=labelled,
                    estimated_accuracy=estimated,
                    estimated_lower=estimated - 0.05,
                    estimated_upper=estimated + 0.05,
                    reference_accuracy=0.85,
                    realised_accuracy=realised,
                    realised_rows=None if realised is None else labelled,
                    data_drift=drifted,
                    prediction_drift=False,
                    report={"data_drift": {"drift": drifted}},
                )
            )
        session.commit()


def store_labels(engine: Engine, served: int, labelled: int) -> None:
    """``served`` served predictions of ``ui-model`` version 2 (ids ``req<i>``, a second
    apart from :data:`SERVING_START`, class ``"1"``), the first ``labelled`` of them with
    label ``"1"``, and quarantined labels: 2 unknown ids (one since resolved), 1 conflict,
    3 invalid."""
    with Session(engine) as session:
        for i in range(served):
            session.add(
                ServedPredictionRow(
                    prediction_id=f"req{i}",
                    write_id=1 + i // 10,
                    served_at=SERVING_START + timedelta(seconds=i),
                    request_id=f"req{i}",
                    model_name="ui-model",
                    model_version=2,
                    features={"x": float(i)},
                    prediction="1",
                    probability=0.7,
                    label="1" if i < labelled else None,
                    labelled_at=SERVING_START + timedelta(hours=1) if i < labelled else None,
                    label_origin="labels.csv" if i < labelled else None,
                )
            )
        quarantined = [
            ("unknown_id", None),
            ("unknown_id", SERVING_START + timedelta(hours=2)),
            ("conflict", None),
            *[("invalid", None)] * 3,
        ]
        for row, (reason, resolved) in enumerate(quarantined, start=1):
            session.add(
                QuarantinedLabelRow(
                    received_at=SERVING_START + timedelta(hours=1),
                    origin="labels.csv",
                    row=row,
                    prediction_id=None if reason == "invalid" else f"q{row}",
                    label="0",
                    reason=reason,
                    detail=f"row {row}: {reason}",
                    resolved_at=resolved,
                )
            )
        session.commit()
