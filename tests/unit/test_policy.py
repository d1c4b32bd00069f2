"""The retraining policy: every branch, its order, and its reason word for word."""

from __future__ import annotations

from typing import Any

import pytest

from ia_continu.policy import RetrainDecision, decide_retrain

STABLE = {"has_champion": True, "concept_drift": False, "data_drift": False}
CONCEPT = "concept drift: error 0.301 on 336 rows vs reference 0.201 on 1344 rows (p=3.1e-07)"
BROKEN = "champion version 3 cannot be loaded (BadZipFile)"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({**STABLE, "force": True}, RetrainDecision(True, "manual retrain requested", "manual")),
        ({**STABLE, "has_champion": False}, RetrainDecision(True, "no champion yet", "bootstrap")),
        (
            {**STABLE, "champion_problem": BROKEN},
            RetrainDecision(True, f"{BROKEN}: retrain to replace it", "drift"),
        ),
        (
            {**STABLE, "concept_drift": True, "concept_reason": CONCEPT},
            RetrainDecision(True, CONCEPT, "drift"),
        ),
        (
            {**STABLE, "concept_drift": True},
            RetrainDecision(True, "concept drift: champion error rate rose", "drift"),
        ),
        (
            {**STABLE, "concept_drift": True, "concept_reason": ""},
            RetrainDecision(True, "concept drift: champion error rate rose", "drift"),
        ),
        (
            {**STABLE, "data_drift": True, "retrain_on_data_drift": True},
            RetrainDecision(True, "data drift and IAC_RETRAIN_ON_DATA_DRIFT=true", "drift"),
        ),
        (
            {**STABLE, "data_drift": True},
            RetrainDecision(False, "data drift without performance loss: warn only"),
        ),
        ({**STABLE, "retrain_on_data_drift": True}, RetrainDecision(False, "no drift")),
        (STABLE, RetrainDecision(False, "no drift")),
        ({**STABLE, "concept_reason": CONCEPT}, RetrainDecision(False, "no drift")),
        ({**STABLE, "champion_problem": ""}, RetrainDecision(False, "no drift")),
    ],
)
def test_every_branch_and_its_reason(kwargs: dict[str, Any], expected: RetrainDecision) -> None:
    assert decide_retrain(**kwargs) == expected


def test_force_wins_over_everything() -> None:
    decision = decide_retrain(
        has_champion=False,
        concept_drift=True,
        data_drift=True,
        concept_reason=CONCEPT,
        retrain_on_data_drift=True,
        force=True,
        champion_problem=BROKEN,
    )
    assert decision == RetrainDecision(True, "manual retrain requested", "manual")


def test_no_champion_wins_over_a_champion_problem_and_drift() -> None:
    decision = decide_retrain(
        has_champion=False, concept_drift=True, data_drift=True, champion_problem=BROKEN
    )
    assert decision == RetrainDecision(True, "no champion yet", "bootstrap")


def test_a_champion_problem_wins_over_drift() -> None:
    decision = decide_retrain(
        has_champion=True,
        concept_drift=True,
        data_drift=True,
        concept_reason=CONCEPT,
        champion_problem=BROKEN,
    )
    assert decision == RetrainDecision(True, f"{BROKEN}: retrain to replace it", "drift")


def test_concept_drift_wins_over_data_drift() -> None:
    decision = decide_retrain(
        has_champion=True,
        concept_drift=True,
        data_drift=True,
        concept_reason=CONCEPT,
        retrain_on_data_drift=True,
    )
    assert decision == RetrainDecision(True, CONCEPT, "drift")


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        decide_retrain(True, False, False)  # type: ignore[call-arg]


def test_a_scheduled_challenge_comes_after_every_drift_rule_and_only_when_due() -> None:
    due = {**STABLE, "challenge_every": 4}
    assert decide_retrain(**due, cycles_since_retrain=3) == RetrainDecision(False, "no drift")
    assert decide_retrain(**due, cycles_since_retrain=None) == RetrainDecision(False, "no drift")
    assert decide_retrain(**due, cycles_since_retrain=4) == RetrainDecision(
        True,
        "scheduled challenge: 4 cycles since the last retrain (IAC_CHALLENGE_EVERY_CYCLES=4)",
        "schedule",
    )
    assert decide_retrain(**{**due, "challenge_every": 0}, cycles_since_retrain=99) == (
        RetrainDecision(False, "no drift")
    )
    drifted = decide_retrain(**{**due, "concept_drift": True}, cycles_since_retrain=9)
    assert drifted.trigger == "drift"
    warned = decide_retrain(**{**due, "data_drift": True}, cycles_since_retrain=5)
    assert warned.trigger == "schedule"


def test_challenging_every_cycle_and_the_default_of_no_schedule() -> None:
    every = decide_retrain(**STABLE, challenge_every=1, cycles_since_retrain=1)
    assert every.retrain and every.trigger == "schedule"
    # Without IAC_CHALLENGE_EVERY_CYCLES given, no scheduled challenge however long ago.
    assert decide_retrain(**STABLE, cycles_since_retrain=10_000) == RetrainDecision(
        False, "no drift"
    )
