"""The console's serving tables: estimated vs realised accuracy per serving report, label
coverage, and the label status of served predictions, read from a real SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ia_continu import history
from ia_continu.storage.schema import get_engine
from ia_continu.storage.tables import QuarantinedLabelRow, ServedPredictionRow, ServingReportRow

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

# (labelled_rows of 100, estimated accuracy, realised accuracy or None, data drift)
Report = tuple[int, float, float | None, bool]


def store_serving_reports(engine: Engine, plan: list[Report], version: int = 2) -> None:
    """One serving report per item of ``plan``, a minute apart, inserted in reverse time
    order (the history must sort them); 100 rows per window, interval ±0.05, reference
    0.85, realised on the labelled rows."""
    with Session(engine) as session:
        for i, (labelled, estimated, realised, drifted) in reversed(list(enumerate(plan))):
            created = START + timedelta(minutes=i)
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
    """``served`` served predictions, the first ``labelled`` of them with a label, and
    quarantined labels: 2 unknown ids (one since resolved), 1 conflict, 3 invalid."""
    with Session(engine) as session:
        for i in range(served):
            session.add(
                ServedPredictionRow(
                    prediction_id=f"req{i}",
                    write_id=1 + i // 10,
                    served_at=START + timedelta(seconds=i),
                    request_id=f"req{i}",
                    model_name="ui-model",
                    model_version=2,
                    features={"x": float(i)},
                    prediction="1",
                    probability=0.7,
                    label="1" if i < labelled else None,
                    labelled_at=START + timedelta(hours=1) if i < labelled else None,
                    label_origin="labels.csv" if i < labelled else None,
                )
            )
        quarantined = [
            ("unknown_id", None),
            ("unknown_id", START + timedelta(hours=2)),
            ("conflict", None),
            *[("invalid", None)] * 3,
        ]
        for row, (reason, resolved) in enumerate(quarantined, start=1):
            session.add(
                QuarantinedLabelRow(
                    received_at=START + timedelta(hours=1),
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


def test_serving_history_in_time_order_with_coverage_and_realised_accuracy(
    tmp_path: Path,
) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 's.db'}")
    plan: list[Report] = [(80, 0.84, 0.83, False), (40, 0.78, 0.75, True), (0, 0.70, None, False)]
    store_serving_reports(engine, plan)
    frame = history.serving_history(engine)
    assert list(frame.columns) == history.SERVING_COLUMNS
    assert frame["created_at"].is_monotonic_increasing
    assert frame["label_coverage"].tolist() == [0.8, 0.4, 0.0]
    assert frame["estimated_accuracy"].tolist() == [0.84, 0.78, 0.70]
    assert frame["estimated_lower"].round(2).tolist() == [0.79, 0.73, 0.65]
    assert frame["estimated_upper"].round(2).tolist() == [0.89, 0.83, 0.75]
    assert frame["reference_accuracy"].tolist() == [0.85] * 3
    # The newest window's labels have not landed yet: no realised accuracy, no rows.
    assert frame["realised_accuracy"].tolist()[:2] == [0.83, 0.75]
    assert frame["realised_accuracy"].isna().tolist() == [False, False, True]
    assert frame["realised_rows"].isna().tolist() == [False, False, True]
    assert list(frame["data_drift"]) == [False, True, False]
    assert frame.dtypes["champion_version"] == "Int64"
    assert frame.dtypes["realised_accuracy"] == "float64"
    assert frame.dtypes["data_drift"] == "bool"
    # ``limit`` keeps the newest reports.
    newest = history.serving_history(engine, limit=2)
    assert newest["estimated_accuracy"].tolist() == [0.78, 0.70]


def test_empty_window_has_no_coverage_rather_than_an_error(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'z.db'}")
    with Session(engine) as session:
        session.add(
            ServingReportRow(
                id="empty",
                created_at=START,
                source="serving:ui-model",
                champion_version=None,
                window_start=START,
                window_end=START,
                n_rows=0,
                labelled_rows=0,
                data_drift=False,
                prediction_drift=False,
                report={},
            )
        )
        session.commit()
    frame = history.serving_history(engine)
    assert frame["label_coverage"].isna().all()
    assert frame["estimated_accuracy"].isna().all()
    assert frame["champion_version"].isna().all()


def test_label_status_counts_unresolved_quarantine_by_reason(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'l.db'}")
    store_labels(engine, served=30, labelled=12)
    assert history.label_status(engine) == {
        "served": 30,
        "labelled": 12,
        "unlabelled": 18,
        "quarantined": {"unknown_id": 1, "conflict": 1, "invalid": 3},
    }


def test_empty_database_gives_empty_serving_tables(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'e.db'}")
    frame = history.serving_history(engine)
    assert frame.empty and list(frame.columns) == history.SERVING_COLUMNS
    assert history.label_status(engine) == {
        "served": 0,
        "labelled": 0,
        "unlabelled": 0,
        "quarantined": {"unknown_id": 0, "conflict": 0, "invalid": 0},
    }
