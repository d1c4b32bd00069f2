"""The loop's history as tables for the operator console: accuracy per batch with
retrain and promotion events, drift statistic per feature, batches ingested, and the
served traffic: estimated vs realised accuracy per serving report, label coverage, and
where the ground truth of served predictions stands.

Read-only queries over the project database (drift and serving reports, batches, served
predictions, quarantined labels); the histories are pandas DataFrames in time order,
newest ``limit`` reports at most.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ia_continu.data.storage import served
from ia_continu.data.storage.tables import BatchRow, DriftReportRow, ServingReportRow

HISTORY_COLUMNS = [
    "created_at",
    "batch_id",
    "champion_version",
    "accuracy",
    "reference_accuracy",
    "p_value",
    "data_drift",
    "concept_drift",
    "retrain",
    "promoted",
    "reason",
]
FEATURE_COLUMNS = [
    "created_at",
    "batch_id",
    "feature",
    "test",
    "statistic",
    "effect",
    "psi",
    "p_adjusted",
    "drifted",
]
SERVING_COLUMNS = [
    "created_at",
    "champion_version",
    "n_rows",
    "labelled_rows",
    "label_coverage",
    "estimated_accuracy",
    "estimated_lower",
    "estimated_upper",
    "reference_accuracy",
    "realised_accuracy",
    "realised_rows",
    "data_drift",
    "prediction_drift",
]


class LabelStatus(TypedDict):
    """Where the ground truth of served predictions stands (counts of rows)."""

    served: int
    labelled: int
    unlabelled: int
    quarantined: dict[str, int]


def _reports(engine: Engine, limit: int) -> list[DriftReportRow]:
    with Session(engine) as session:
        rows = session.scalars(
            select(DriftReportRow).order_by(DriftReportRow.created_at.desc()).limit(limit)
        ).all()
    return list(reversed(rows))


def _reference_accuracy(performance: dict[str, Any]) -> float | None:
    # Reports of the accuracy-floor rule (before issue 12) stored `validation_accuracy`.
    key = "reference_accuracy" if "reference_accuracy" in performance else "validation_accuracy"
    value: float | None = performance.get(key)
    return value


def drift_history(engine: Engine, limit: int = 2_000) -> pd.DataFrame:
    """One row per drift report, oldest first (columns :data:`HISTORY_COLUMNS`).

    ``accuracy`` is the champion's accuracy on the newest batch (0..1, NaN before the
    first champion); ``reference_accuracy`` the accuracy the concept-drift test compares it
    with (its validation rows pooled with its first batches in service, see
    :mod:`ia_continu.monitoring.concept_drift`; NaN when unknown) and ``p_value`` that test's one-sided
    p-value (NaN when unknown). Reports written before that test existed carry the
    validation accuracy instead, read in place of the reference, and no p-value.
    ``promoted`` is True on the first report served by a new champion version (the
    promotion happened in the cycle before it).
    """
    records: list[dict[str, Any]] = []
    previous_version: int | None = None
    for row in _reports(engine, limit):
        performance = row.report.get("performance") or {}
        decision = row.report.get("decision") or {}
        version = row.champion_version
        records.append(
            {
                "created_at": row.created_at,
                "batch_id": row.batch_id,
                "champion_version": version,
                "accuracy": performance.get("accuracy"),
                "reference_accuracy": _reference_accuracy(performance),
                "p_value": performance.get("p_value"),
                "data_drift": row.data_drift,
                "concept_drift": row.concept_drift,
                "retrain": row.retrain,
                "promoted": version is not None
                and previous_version is not None
                and version != previous_version,
                "reason": decision.get("reason", ""),
            }
        )
        previous_version = version if version is not None else previous_version
    frame = pd.DataFrame.from_records(records, columns=HISTORY_COLUMNS)
    floats = dict.fromkeys(("accuracy", "reference_accuracy", "p_value"), "float64")
    return frame.astype({"champion_version": "Int64", **floats})


def feature_drift(engine: Engine, limit: int = 2_000) -> pd.DataFrame:
    """Long table, one row per (report, feature), oldest first (:data:`FEATURE_COLUMNS`).

    ``statistic`` is the test statistic (KS D for numeric features, chi-square for
    categorical ones), ``effect`` the effect size (normalised Wasserstein-1 or PSI) and
    ``p_adjusted`` the Benjamini-Hochberg adjusted p-value; see :mod:`ia_continu.monitoring.data_drift`.
    """
    records = [
        {
            "created_at": row.created_at,
            "batch_id": row.batch_id,
            **{k: f.get(k) for k in FEATURE_COLUMNS[2:]},
        }
        for row in _reports(engine, limit)
        for f in ((row.report.get("data_drift") or {}).get("features") or [])
    ]
    return pd.DataFrame.from_records(records, columns=FEATURE_COLUMNS)


def batches_ingested(engine: Engine) -> pd.DataFrame:
    """Batches and rows ingested per source: ``source``, ``batches``, ``rows``, ``first_at``,
    ``last_at``."""
    query = select(
        BatchRow.source,
        func.count(BatchRow.id),
        func.sum(BatchRow.n_rows),
        func.min(BatchRow.created_at),
        func.max(BatchRow.created_at),
    ).group_by(BatchRow.source)
    with Session(engine) as session:
        rows = session.execute(query).all()
    return pd.DataFrame(
        [tuple(r) for r in rows], columns=["source", "batches", "rows", "first_at", "last_at"]
    )


def serving_history(engine: Engine, limit: int = 2_000) -> pd.DataFrame:
    """One row per serving report, oldest first, newest ``limit`` at most
    (columns :data:`SERVING_COLUMNS`).

    ``n_rows`` served predictions were in the report's window, ``labelled_rows`` of them
    had ground truth then, so ``label_coverage`` = labelled_rows / n_rows (0..1, NaN on
    an empty window). ``estimated_accuracy`` is the champion's CBPE-estimated accuracy on
    the window with its interval ``estimated_lower``..``estimated_upper`` and
    ``reference_accuracy`` the accuracy of its calibration rows (all 0..1, NaN when
    unknown; see :mod:`ia_continu.monitoring.estimation`). ``realised_accuracy`` on ``realised_rows``
    labelled rows is filled by a later cycle once the labels had ``IAC_LABEL_DELAY`` to
    land: NaN / <NA> until then. ``data_drift`` / ``prediction_drift``: the serving window's
    inputs / predicted classes and probabilities drifted from the champion's reference.
    """
    with Session(engine) as session:
        rows = session.scalars(
            select(ServingReportRow).order_by(ServingReportRow.created_at.desc()).limit(limit)
        ).all()
    frame = pd.DataFrame.from_records(
        [{c: getattr(row, c, None) for c in SERVING_COLUMNS} for row in reversed(rows)],
        columns=SERVING_COLUMNS,
    )
    floats = [c for c in SERVING_COLUMNS if "accuracy" in c or c.startswith("estimated_")]
    frame = frame.astype(
        {
            "champion_version": "Int64",
            "n_rows": "int64",
            "labelled_rows": "int64",
            "realised_rows": "Int64",
            "data_drift": "bool",
            "prediction_drift": "bool",
            **dict.fromkeys(floats, "float64"),
        }
    )
    # An empty window has no coverage rather than a division error.
    frame["label_coverage"] = frame["labelled_rows"] / frame["n_rows"].where(frame["n_rows"] > 0)
    return frame.astype({"label_coverage": "float64"})


def label_status(engine: Engine) -> LabelStatus:
    """Counts of served predictions and of their labels
    (:func:`ia_continu.data.storage.served.label_counts`, the one owner of these counts).

    ``served``: rows of ``served_predictions``; ``labelled``: those with a joined label;
    ``unlabelled`` = served - labelled; ``quarantined``: labels kept aside and not yet
    resolved, by reason (every key of :data:`ia_continu.data.storage.served.REASONS`, 0 when
    none; an ``unknown_id`` label that later joined is resolved and not counted).
    """
    counts = served.label_counts(engine)
    return LabelStatus(
        served=counts.predictions,
        labelled=counts.labelled,
        unlabelled=counts.unlabelled,
        quarantined=dict(counts.quarantined),
    )
