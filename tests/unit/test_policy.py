"""The retraining policy."""

from __future__ import annotations

import pytest

from ia_continu.policy import RetrainDecision, decide_retrain


@pytest.mark.parametrize(
    ("kwargs", "retrain", "reason"),
    [
        (
            {"has_champion": True, "concept_drift": False, "data_drift": False, "force": True},
            True,
            "manual retrain requested",
        ),
        (
            {"has_champion": False, "concept_drift": False, "data_drift": False},
            True,
            "no champion yet",
        ),
        (
            {"has_champion": True, "concept_drift": True, "data_drift": False},
            True,
            "performance drift",
        ),
        (
            {
                "has_champion": True,
                "concept_drift": False,
                "data_drift": False,
                "champion_problem": "champion version 3 cannot be loaded (BadZipFile)",
            },
            True,
            "champion version 3 cannot be loaded (BadZipFile): retrain to replace it",
        ),
        (
            {"has_champion": True, "concept_drift": True, "data_drift": True},
            True,
            "performance drift",
        ),
        (
            {
                "has_champion": True,
                "concept_drift": False,
                "data_drift": True,
                "retrain_on_data_drift": True,
            },
            True,
            "IAC_RETRAIN_ON_DATA_DRIFT",
        ),
        (
            {"has_champion": True, "concept_drift": False, "data_drift": True},
            False,
            "warn only",
        ),
        (
            {
                "has_champion": True,
                "concept_drift": False,
                "data_drift": False,
                "retrain_on_data_drift": True,
            },
            False,
            "no drift",
        ),
        (
            {"has_champion": True, "concept_drift": False, "data_drift": False},
            False,
            "no drift",
        ),
    ],
)
def test_decide_retrain_branches(kwargs: dict[str, bool], retrain: bool, reason: str) -> None:
    decision = decide_retrain(**kwargs)
    assert isinstance(decision, RetrainDecision)
    assert decision.retrain is retrain
    assert reason in decision.reason


def test_force_wins_over_everything() -> None:
    decision = decide_retrain(has_champion=False, concept_drift=True, data_drift=True, force=True)
    assert decision == RetrainDecision(True, "manual retrain requested")


def test_no_champion_wins_over_drift_flags() -> None:
    decision = decide_retrain(has_champion=False, concept_drift=True, data_drift=True)
    assert decision.reason == "no champion yet"


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        decide_retrain(True, False, False)  # type: ignore[call-arg]
