"""The promotion gate."""

from __future__ import annotations

import math

import pytest

from ia_continu.promotion import PromotionDecision, decide_promotion


def test_bootstrap_promotes_without_champion() -> None:
    decision = decide_promotion(0.55, None)
    assert decision.promote
    assert decision.champion_accuracy is None
    assert decision.challenger_accuracy == 0.55
    assert "no champion" in decision.reason


def test_bootstrap_promotes_even_a_poor_first_model_with_margin() -> None:
    assert decide_promotion(0.0, None, margin=0.5).promote


def test_better_than_margin_promotes() -> None:
    decision = decide_promotion(0.875, 0.75, margin=0.0625)
    assert decision.promote
    assert (decision.challenger_accuracy, decision.champion_accuracy) == (0.875, 0.75)
    assert decision.margin == 0.0625
    assert "+0.125" in decision.reason


def test_better_with_zero_margin_promotes() -> None:
    assert decide_promotion(0.51, 0.5).promote


@pytest.mark.parametrize(
    ("challenger", "champion", "margin"),
    [(0.75, 0.5, 0.25), (0.5, 0.5, 0.0), (1.0, 1.0, 0.0), (0.625, 0.5, 0.125)],
)
def test_gain_equal_to_margin_does_not_promote(
    challenger: float, champion: float, margin: float
) -> None:
    assert challenger - champion == margin  # exactly representable in binary
    decision = decide_promotion(challenger, champion, margin)
    assert not decision.promote
    assert "does not exceed" in decision.reason


def test_gain_below_margin_does_not_promote() -> None:
    assert not decide_promotion(0.7, 0.68, margin=0.05).promote


def test_worse_does_not_promote() -> None:
    decision = decide_promotion(0.5, 0.9)
    assert not decision.promote
    assert "-0.400" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "champion"),
    [(math.nan, 0.5), (0.5, math.nan), (1.01, 0.5), (-0.01, 0.5), (0.5, 1.5), (0.5, -1.0)],
)
def test_invalid_accuracy_raises(challenger: float, champion: float) -> None:
    with pytest.raises(ValueError, match=r"accuracy must be in \[0, 1\]"):
        decide_promotion(challenger, champion)


def test_nan_challenger_without_champion_raises() -> None:
    with pytest.raises(ValueError, match="challenger"):
        decide_promotion(math.nan, None)


def test_negative_margin_raises() -> None:
    with pytest.raises(ValueError, match="margin must be >= 0"):
        decide_promotion(0.9, 0.5, margin=-0.01)


def test_decision_to_dict() -> None:
    decision = decide_promotion(0.75, 0.5, 0.0)
    assert isinstance(decision, PromotionDecision)
    assert decision.to_dict() == {
        "promote": True,
        "challenger_accuracy": 0.75,
        "champion_accuracy": 0.5,
        "margin": 0.0,
        "reason": decision.reason,
    }


def test_decimal_gain_equal_to_margin_does_not_promote() -> None:
    # 152/200 vs 150/200 on a 200-row hold-out, IAC_PROMOTION_MARGIN=0.01.
    assert not decide_promotion(152 / 200, 150 / 200, margin=0.01).promote
