"""The retraining policy: every branch, its order, and its reason word for word."""

from __future__ import annotations

from typing import Any

import pytest

from ia_continu.loop.policy import RetrainDecision, decide_retrain

STABLE = {"has_champion": True, "concept_drift": False, "data_drift": False}
CONCEPT = "concept drift: error 0.301 on 336 rows vs reference 0.201 on 1344 rows (p=3.1e-07)"
BROKEN = "champion version 3 cannot be loaded (BadZipFile)"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {**STABLE, "force": True},
            RetrainDecision(retrain=True, reason="manual retrain requested", trigger="manual"),
        ),
        (
            {**STABLE, "has_champion": False},
            RetrainDecision(retrain=True, reason="no champion yet", trigger="bootstrap"),
        ),
        (
            {**STABLE, "champion_problem": BROKEN},
            RetrainDecision(
                retrain=True, reason=f"{BROKEN}: retrain to replace it", trigger="drift"
            ),
        ),
        (
            {**STABLE, "concept_drift": True, "concept_reason": CONCEPT},
            RetrainDecision(retrain=True, reason=CONCEPT, trigger="drift"),
        ),
        (
            {**STABLE, "concept_drift": True},
            RetrainDecision(
                retrain=True, reason="concept drift: champion error rate rose", trigger="drift"
            ),
        ),
        (
            {**STABLE, "concept_drift": True, "concept_reason": ""},
            RetrainDecision(
                retrain=True, reason="concept drift: champion error rate rose", trigger="drift"
            ),
        ),
        (
            {**STABLE, "data_drift": True, "retrain_on_data_drift": True},
            RetrainDecision(
                retrain=True,
                reason="data drift and IAC_RETRAIN_ON_DATA_DRIFT=true",
                trigger="drift",
            ),
        ),
        (
            {**STABLE, "data_drift": True},
            RetrainDecision(retrain=False, reason="data drift without performance loss: warn only"),
        ),
        (
            {**STABLE, "retrain_on_data_drift": True},
            RetrainDecision(retrain=False, reason="no drift"),
        ),
        (STABLE, RetrainDecision(retrain=False, reason="no drift")),
        ({**STABLE, "concept_reason": CONCEPT}, RetrainDecision(retrain=False, reason="no drift")),
        ({**STABLE, "champion_problem": ""}, RetrainDecision(retrain=False, reason="no drift")),
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
    assert decision == RetrainDecision(
        retrain=True, reason="manual retrain requested", trigger="manual"
    )


def test_no_champion_wins_over_a_champion_problem_and_drift() -> None:
    decision = decide_retrain(
        has_champion=False, concept_drift=True, data_drift=True, champion_problem=BROKEN
    )
    assert decision == RetrainDecision(retrain=True, reason="no champion yet", trigger="bootstrap")


def test_a_champion_problem_wins_over_drift() -> None:
    decision = decide_retrain(
        has_champion=True,
        concept_drift=True,
        data_drift=True,
        concept_reason=CONCEPT,
        champion_problem=BROKEN,
    )
    assert decision == RetrainDecision(
        retrain=True, reason=f"{BROKEN}: retrain to replace it", trigger="drift"
    )


def test_concept_drift_wins_over_data_drift() -> None:
    decision = decide_retrain(
        has_champion=True,
        concept_drift=True,
        data_drift=True,
        concept_reason=CONCEPT,
        retrain_on_data_drift=True,
    )
    assert decision == RetrainDecision(retrain=True, reason=CONCEPT, trigger="drift")


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        decide_retrain(True, False, False)  # type: ignore[call-arg]


def test_a_scheduled_challenge_comes_after_every_drift_rule_and_only_when_due() -> None:
    due = {**STABLE, "challenge_every": 4}
    assert decide_retrain(**due, cycles_since_retrain=3) == RetrainDecision(
        retrain=False, reason="no drift"
    )
    assert decide_retrain(**due, cycles_since_retrain=None) == RetrainDecision(
        retrain=False, reason="no drift"
    )
    assert decide_retrain(**due, cycles_since_retrain=4) == RetrainDecision(
        retrain=True,
        reason="scheduled challenge: 4 cycles since the last retrain (IAC_CHALLENGE_EVERY_CYCLES=4)",
        trigger="schedule",
    )
    assert decide_retrain(**{**due, "challenge_every": 0}, cycles_since_retrain=99) == (
        RetrainDecision(retrain=False, reason="no drift")
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
        retrain=False, reason="no drift"
    )


def test_a_decision_names_a_trigger_exactly_when_it_retrains() -> None:
    with pytest.raises(ValueError, match="trigger"):
        RetrainDecision(retrain=True, reason="drift")
    with pytest.raises(ValueError, match="trigger"):
        RetrainDecision(retrain=False, reason="no drift", trigger="drift")
