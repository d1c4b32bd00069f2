"""The console's serving tables: estimated vs realised accuracy per serving report, label
coverage, and the label status of served predictions, read from a real SQLite database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import ServingReportRow
from ia_continu.loop import history
from tests.utils.serving import (
    SERVING_START,
    ServingReportPlan,
    store_labels,
    store_serving_reports,
)


def test_serving_history_in_time_order_with_coverage_and_realised_accuracy(
    tmp_path: Path,
) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 's.db'}")
    plan: list[ServingReportPlan] = [
        (80, 0.84, 0.83, False),
        (40, 0.78, 0.75, True),
        (0, 0.70, None, False),
    ]
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
    engine = migrate(f"sqlite:///{tmp_path / 'z.db'}")
    with Session(engine) as session:
        session.add(
            ServingReportRow(
                id="empty",
                created_at=SERVING_START,
                source="serving:ui-model",
                champion_version=None,
                window_start=SERVING_START,
                window_end=SERVING_START,
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
    engine = migrate(f"sqlite:///{tmp_path / 'l.db'}")
    store_labels(engine, served=30, labelled=12)
    assert history.label_status(engine) == {
        "served": 30,
        "labelled": 12,
        "unlabelled": 18,
        "quarantined": {"unknown_id": 1, "conflict": 1, "invalid": 3},
    }


def test_empty_database_gives_empty_serving_tables(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'e.db'}")
    frame = history.serving_history(engine)
    assert frame.empty and list(frame.columns) == history.SERVING_COLUMNS
    assert history.label_status(engine) == {
        "served": 0,
        "labelled": 0,
        "unlabelled": 0,
        "quarantined": {"unknown_id": 0, "conflict": 0, "invalid": 0},
    }
