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
        "baseline_accuracy": None,
    }


def test_decimal_gain_equal_to_margin_does_not_promote() -> None:
    # 152/200 vs 150/200 on a 200-row hold-out, IAC_PROMOTION_MARGIN=0.01.
    assert not decide_promotion(152 / 200, 150 / 200, margin=0.01).promote


def test_single_class_holdout_never_promotes_even_the_first_model() -> None:
    # The 99 %-one-class window: a perfect score on rows the majority class also gets right.
    decision = decide_promotion(1.0, None, baseline_accuracy=1.0)
    assert not decision.promote
    assert "single class" in decision.reason
    assert decision.baseline_accuracy == 1.0
    assert not decide_promotion(1.0, 0.5, baseline_accuracy=1.0).promote


@pytest.mark.parametrize("champion", [None, 0.6])
def test_challenger_must_beat_the_majority_baseline_strictly(champion: float | None) -> None:
    assert not decide_promotion(0.7, champion, baseline_accuracy=0.7).promote
    assert not decide_promotion(0.65, champion, baseline_accuracy=0.7).promote
    decision = decide_promotion(0.71, champion, baseline_accuracy=0.7)
    assert decision.promote
    assert "baseline" not in decision.reason


def test_min_lift_over_baseline() -> None:
    refused = decide_promotion(0.75, None, baseline_accuracy=0.5, min_lift_over_baseline=0.25)
    assert not refused.promote
    assert "majority-class baseline 0.500 by more than 0.250" in refused.reason
    assert decide_promotion(0.76, None, baseline_accuracy=0.5, min_lift_over_baseline=0.25).promote


def test_baseline_is_checked_before_the_champion() -> None:
    decision = decide_promotion(0.55, 0.4, baseline_accuracy=0.6)
    assert not decision.promote
    assert "baseline" in decision.reason


@pytest.mark.parametrize("baseline", [math.nan, -0.1, 1.1])
def test_invalid_baseline_raises(baseline: float) -> None:
    with pytest.raises(ValueError, match=r"baseline accuracy must be in \[0, 1\]"):
        decide_promotion(0.9, None, baseline_accuracy=baseline)


def test_negative_lift_raises() -> None:
    with pytest.raises(ValueError, match="min_lift_over_baseline must be >= 0"):
        decide_promotion(0.9, None, baseline_accuracy=0.5, min_lift_over_baseline=-0.1)
