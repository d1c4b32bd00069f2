"""The typed results that cross from the cycle to the flows, Discord and Prometheus."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime

import pytest

from ia_continu.loop import cycle
from ia_continu.loop.results import (
    TRIGGERS,
    CycleResult,
    DriftReport,
    GateResult,
    RetrainDecision,
    RetrainOutcome,
    parse_trigger,
)
from ia_continu.monitoring.concept_drift import ConceptDrift
from ia_continu.monitoring.data_drift import DataDriftReport, FeatureDrift
from ia_continu.training.windows import WindowChoice


def _report() -> DriftReport:
    return DriftReport(
        id="r1",
        created_at=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        data_drift_new=True,
        source="s",
        batch_id=7,
        current_batch_ids=[6, 7],
        reference_batch_ids=[1, 2],
        champion_version=3,
        data_drift=DataDriftReport(
            n_reference=400,
            n_current=400,
            alpha=0.01,
            features=[
                FeatureDrift("x", "numeric", "ks", 0.3, 1e-9, 1e-8, 0.4, 0.2, True),
                FeatureDrift("day", "categorical", "chi2", 2.5, 0.7, 0.7, 0.01, 0.01, False),
            ],
            drift=True,
            drifted_features=["x"],
        ),
        performance=ConceptDrift(
            accuracy=0.6,
            n=200,
            errors=80,
            reference_accuracy=0.85,
            reference_n=500,
            reference_errors=75,
            reference_batch_ids=[3],
            statistic=7.0,
            p_value=1e-6,
            dispersion=1.0,
            alpha=0.01,
            min_effect=0.02,
            drift=True,
            change_batch_id=7,
            reason="concept drift: error 0.40 vs 0.15",
        ),
        decision=RetrainDecision(retrain=True, reason="concept drift", trigger="drift"),
    )


def test_the_stored_report_keeps_the_keys_the_database_mlflow_and_console_read() -> None:
    stored = _report().to_json()
    assert json.loads(json.dumps(stored)) == stored
    assert stored["created_at"] == "2026-11-29T12:00:00+00:00"
    assert stored["decision"] == {"retrain": True, "reason": "concept drift", "trigger": "drift"}
    assert stored["data_drift"]["drift_share"] == 0.5  # a property, kept in the stored form
    assert stored["data_drift"]["features"][0]["feature"] == "x"
    assert stored["performance"]["change_batch_id"] == 7
    assert set(stored) == {
        "id", "created_at", "data_drift_new", "source", "batch_id", "current_batch_ids",
        "reference_batch_ids", "champion_version", "champion_problem", "data_drift",
        "performance", "decision",
    }  # fmt: skip


def test_the_summary_is_what_notifications_and_metrics_read() -> None:
    summary = _report().summary()
    assert (summary.data_drift, summary.concept_drift, summary.retrain) == (True, True, True)
    assert summary.trigger == "drift" and summary.drifted_features == ["x"]
    assert summary.champion_accuracy == 0.6 and summary.change_batch_id == 7
    assert [f.feature for f in summary.features] == ["x", "day"]
    quiet = _report().model_copy(
        update={"data_drift": None, "performance": None,
                "decision": RetrainDecision(retrain=False, reason="no drift")}
    ).summary()  # fmt: skip
    assert not quiet.data_drift and quiet.champion_accuracy is None and quiet.trigger is None


def test_triggers_are_one_closed_set_parsed_from_plain_text() -> None:
    assert TRIGGERS == ("bootstrap", "manual", "drift", "schedule")
    assert [parse_trigger(t) for t in TRIGGERS] == list(TRIGGERS)
    with pytest.raises(ValueError, match="trigger must be one of"):
        parse_trigger("cron")
    with pytest.raises(ValueError):
        RetrainOutcome(challenger_accuracy=None, champion_accuracy=None, reason="", trigger="cron")  # type: ignore[arg-type]


def test_an_outcome_starts_from_the_gate_in_one_constructor() -> None:
    choice = WindowChoice("last_2", (5, 6), (6, 7), 7, "best", {"last_2": 0.9})
    gate = GateResult(
        promote=True, challenger_accuracy=0.9, champion_accuracy=0.8, baseline_accuracy=0.5,
        p_value=0.01, margin=0.0, reason="better", window=choice,
    )  # fmt: skip
    outcome = RetrainOutcome.of_gate(gate, previous_version=2, trigger="drift", drift_report_id="r")
    assert (outcome.promoted, outcome.version, outcome.run_id) == (False, None, None)
    assert outcome.window == "last_2" and outcome.p_value == 0.01 and outcome.previous_version == 2
    none = GateResult.no_challenger(
        why="a single class", champion_accuracy=0.8, margin=0.0, holdout_rows=50
    )
    assert none.reason == "no challenger: a single class; the champion stays"
    assert (
        RetrainOutcome.of_gate(
            none, previous_version=2, trigger="drift", drift_report_id=None
        ).window
        is None
    )


def test_results_are_frozen_and_round_trip_as_json() -> None:
    from ia_continu.data.storage.repository import IngestResult

    result = CycleResult(
        batch=IngestResult(batch_id=1, source="s", position=0, n_rows=10, created=True),
        drift=_report().summary(),
    )
    assert CycleResult.model_validate_json(result.model_dump_json()) == result
    with pytest.raises(ValueError):
        result.batch.n_rows = 3  # type: ignore[misc]


def test_the_cycles_public_functions_have_no_any_in_their_signatures() -> None:
    """mypy strict checks the types; this keeps ``Any`` out of the cycle's contract."""
    offenders = []
    for name, function in inspect.getmembers(cycle, inspect.isfunction):
        if name.startswith("_") or function.__module__ != cycle.__name__:
            continue
        annotations = [str(a) for a in function.__annotations__.values()]
        if any("Any" in a for a in annotations):
            offenders.append(name)
    assert offenders == []
