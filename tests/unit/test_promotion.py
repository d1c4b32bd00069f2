"""The promotion gate: exact one-sided McNemar test, margin, majority-class floor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats

from ia_continu.training.promotion import (
    FLOAT_SLACK,
    PromotionDecision,
    decide_promotion,
    mcnemar_p_value,
)

SEEDS = 2_000
ROWS = 336
STAYS = "the champion stays"


def paired(
    challenger_only: int, champion_only: int, both: int = 0, neither: int = 0
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Per-row correctness of a challenger and a champion with the given McNemar cells."""
    challenger = [True] * challenger_only + [False] * champion_only + [True] * both
    champion = [False] * challenger_only + [True] * champion_only + [True] * both
    return (
        np.array(challenger + [False] * neither, dtype=bool),
        np.array(champion + [False] * neither, dtype=bool),
    )


def upper_tail_by_hand(b: int, c: int) -> float:
    """``P(X >= b)``, ``X ~ Binomial(b + c, 1/2)``, summed exactly."""
    n = b + c
    return sum(math.comb(n, k) for k in range(b, n + 1)) / (1 << n)


# --------------------------------------------------------------------------------------
# McNemar p-value
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c"), [(1, 0), (5, 0), (7, 3), (3, 7), (0, 5), (20, 30), (60, 40), (45, 20)]
)
def test_mcnemar_p_value_is_scipys_one_sided_binomial_test(b: int, c: int) -> None:
    want = stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert mcnemar_p_value(b, c) == pytest.approx(want, rel=1e-12)
    assert mcnemar_p_value(b, c) == pytest.approx(upper_tail_by_hand(b, c), rel=1e-9)


def test_mcnemar_p_value_on_counts_worked_by_hand() -> None:
    assert mcnemar_p_value(5, 0) == 1 / 32
    assert mcnemar_p_value(1, 0) == 0.5
    assert mcnemar_p_value(7, 3) == pytest.approx(176 / 1024)  # (120 + 45 + 10 + 1) / 2^10
    assert mcnemar_p_value(0, 5) == 1.0
    assert isinstance(mcnemar_p_value(7, 3), float)


def test_mcnemar_p_value_without_discordant_rows_is_one() -> None:
    assert mcnemar_p_value(0, 0) == 1.0


@pytest.mark.parametrize(("b", "c"), [(-1, 3), (3, -1), (-2, -2)])
def test_mcnemar_p_value_rejects_negative_counts(b: int, c: int) -> None:
    with pytest.raises(ValueError) as info:
        mcnemar_p_value(b, c)
    assert str(info.value) == f"counts must be >= 0, got {b}, {c}"


# --------------------------------------------------------------------------------------
# Decisions, one per branch, in full
# --------------------------------------------------------------------------------------


def test_first_model_bootstraps() -> None:
    challenger, _ = paired(2, 1, 1)
    assert decide_promotion(challenger, None) == PromotionDecision(
        promote=True,
        challenger_accuracy=0.75,
        champion_accuracy=None,
        margin=0.0,
        reason="no champion yet: the first model bootstraps",
        baseline_accuracy=None,
        alpha=0.05,
        p_value=None,
        n=4,
        challenger_only=0,
        champion_only=0,
    )


def test_first_model_above_the_floor_bootstraps() -> None:
    challenger, _ = paired(3, 1)
    decision = decide_promotion(challenger, None, baseline_accuracy=0.5, alpha=0.2, margin=0.5)
    assert decision.promote
    assert decision.reason == "no champion yet: the first model bootstraps"
    assert (decision.baseline_accuracy, decision.alpha, decision.margin) == (0.5, 0.2, 0.5)


def test_significantly_better_challenger_promotes() -> None:
    challenger, champion = paired(12, 2, 80, 6)  # 92 % vs 82 % on 100 rows
    p = upper_tail_by_hand(12, 2)
    decision = decide_promotion(
        challenger,
        champion,
        baseline_accuracy=0.55,
        alpha=0.1,
        margin=0.05,
        min_lift_over_baseline=0.1,
    )
    assert decision == PromotionDecision(
        promote=True,
        challenger_accuracy=0.92,
        champion_accuracy=0.82,
        margin=0.05,
        reason=(
            f"challenger beats champion by +0.100 on 100 rows, McNemar p={p:.3g} "
            "(12 rows only the challenger gets right, 2 only the champion) < alpha 0.1"
        ),
        baseline_accuracy=0.55,
        alpha=0.1,
        p_value=pytest.approx(p, rel=1e-12),  # type: ignore[arg-type]
        n=100,
        challenger_only=12,
        champion_only=2,
    )
    assert decision.to_dict() == vars(decision)


def test_gain_not_significant_keeps_the_champion() -> None:
    challenger, champion = paired(7, 3, 80, 10)  # +0.04 on 100 rows, p = 0.172
    decision = decide_promotion(challenger, champion)
    assert not decision.promote
    assert decision.p_value == pytest.approx(176 / 1024)
    assert decision.reason == (
        "challenger gain +0.040 on 100 rows is not significant (McNemar p=0.172 "
        "(7 rows only the challenger gets right, 3 only the champion) >= alpha 0.05): "
        "the champion stays"
    )


def test_worse_challenger_keeps_the_champion() -> None:
    challenger, champion = paired(3, 43, 50, 4)
    decision = decide_promotion(challenger, champion)
    assert not decision.promote
    assert (decision.challenger_accuracy, decision.champion_accuracy) == (0.53, 0.93)
    assert (decision.challenger_only, decision.champion_only) == (3, 43)
    assert decision.reason == (
        "challenger gain -0.400 on 100 rows does not exceed margin 0.000: the champion stays"
    )


@pytest.mark.parametrize(
    ("b", "c", "both", "neither", "margin"),
    [
        (25, 0, 50, 25, 0.25),  # 0.75 vs 0.50, margin 0.25
        (0, 0, 60, 40, 0.0),  # identical models
        (0, 0, 100, 0, 0.0),  # both perfect
        (2, 0, 150, 48, 0.01),  # 152/200 vs 150/200: 0.76 - 0.75 > 0.01 in floats
        (30, 4, 60, 6, 0.3),  # gain 0.26, very significant, below the margin
    ],
)
def test_gain_at_or_below_the_margin_never_promotes(
    b: int, c: int, both: int, neither: int, margin: float
) -> None:
    challenger, champion = paired(b, c, both, neither)
    decision = decide_promotion(challenger, champion, margin=margin, alpha=1.0)
    assert not decision.promote
    assert decision.reason.endswith(f"does not exceed margin {margin:.3f}: the champion stays")


def test_gain_within_float_slack_of_the_margin_is_at_the_margin() -> None:
    challenger, champion = paired(2, 0, 1, 1)  # 0.75 vs 0.25
    margin = 0.5 - FLOAT_SLACK
    assert margin + FLOAT_SLACK == 0.5
    decision = decide_promotion(challenger, champion, margin=margin, alpha=1.0)
    assert not decision.promote
    assert decision.reason.endswith(f"does not exceed margin {margin:.3f}: {STAYS}")
    assert decide_promotion(challenger, champion, margin=margin - 1e-6, alpha=1.0).promote


def test_p_value_exactly_alpha_does_not_promote() -> None:
    challenger, champion = paired(5, 0, 5)  # p = 1/32 exactly
    at_alpha = decide_promotion(challenger, champion, alpha=1 / 32)
    assert not at_alpha.promote
    assert "not significant" in at_alpha.reason
    assert at_alpha.reason.endswith(">= alpha 0.03125): the champion stays")
    assert decide_promotion(challenger, champion).promote  # default alpha 0.05
    assert decide_promotion(challenger, champion, alpha=0.03).promote is False


def test_alpha_one_promotes_any_real_gain() -> None:
    challenger, champion = paired(1, 0, 3)
    decision = decide_promotion(challenger, champion, alpha=1.0)
    assert decision.promote
    assert decision.p_value == 0.5


def test_correctness_given_as_zero_one_floats() -> None:
    challenger, champion = paired(12, 2, 80, 6)
    decision = decide_promotion(challenger.astype(float), champion.astype(float))
    assert decision.promote
    assert (decision.challenger_only, decision.champion_only) == (12, 2)
    assert decide_promotion(np.array([1.0, 0.0, 1.0, 1.0]), None).challenger_accuracy == 0.75


# --------------------------------------------------------------------------------------
# The majority-class floor
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_champion", [False, True])
def test_single_class_holdout_never_promotes(with_champion: bool) -> None:
    challenger, champion = paired(10, 0, 90)  # a perfect challenger
    decision = decide_promotion(
        challenger, champion if with_champion else None, baseline_accuracy=1.0
    )
    assert not decision.promote
    assert decision.baseline_accuracy == 1.0
    assert decision.reason == (
        "challenger accuracy 1.000 does not beat the majority-class baseline 1.000 "
        "(the held-out rows hold a single class) by more than 0.000: the champion stays"
    )


def test_first_model_below_the_floor_is_refused() -> None:
    challenger, _ = paired(47, 53)  # 0.47 on a binary stream
    decision = decide_promotion(challenger, None, baseline_accuracy=0.55)
    assert decision == PromotionDecision(
        promote=False,
        challenger_accuracy=0.47,
        champion_accuracy=None,
        margin=0.0,
        reason=(
            "challenger accuracy 0.470 does not beat the majority-class baseline 0.550 "
            "by more than 0.000: the champion stays"
        ),
        baseline_accuracy=0.55,
        alpha=0.05,
        p_value=None,
        n=100,
        challenger_only=0,
        champion_only=0,
    )


def test_lift_exactly_at_min_lift_does_not_promote() -> None:
    challenger, _ = paired(76, 24)
    # 0.76 - 0.75 is 0.010000000000000009 in floats: still "exactly" the required lift.
    at_lift = decide_promotion(
        challenger, None, baseline_accuracy=0.75, min_lift_over_baseline=0.01
    )
    assert not at_lift.promote
    assert at_lift.reason == (
        "challenger accuracy 0.760 does not beat the majority-class baseline 0.750 by more "
        "than 0.010: the champion stays"
    )
    assert decide_promotion(
        challenger, None, baseline_accuracy=0.75, min_lift_over_baseline=0.009
    ).promote


def test_lift_within_float_slack_of_min_lift_is_at_min_lift() -> None:
    challenger, _ = paired(3, 1)  # 0.75
    lift = 0.5 - FLOAT_SLACK
    assert lift + FLOAT_SLACK == 0.5
    refused = decide_promotion(
        challenger, None, baseline_accuracy=0.25, min_lift_over_baseline=lift
    )
    assert not refused.promote
    assert "majority-class baseline 0.250 by more than 0.500" in refused.reason


def test_equal_to_the_baseline_does_not_promote_above_it_does() -> None:
    challenger, champion = paired(20, 0, 50, 30)  # 0.70 vs 0.50
    assert not decide_promotion(challenger, champion, baseline_accuracy=0.7).promote
    assert decide_promotion(challenger, champion, baseline_accuracy=0.69).promote
    assert decide_promotion(challenger, None, baseline_accuracy=0.0).promote


def test_the_floor_is_checked_before_the_champion() -> None:
    challenger, champion = paired(25, 10, 30, 35)  # 0.55 vs 0.40, significant
    decision = decide_promotion(challenger, champion, baseline_accuracy=0.6)
    assert not decision.promote
    assert decision.reason.startswith("challenger accuracy 0.550 does not beat the majority")
    assert decision.p_value == pytest.approx(upper_tail_by_hand(25, 10))
    assert (decision.challenger_only, decision.champion_only) == (25, 10)


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline_accuracy": math.nan}, "baseline accuracy must be in [0, 1], got nan"),
        ({"baseline_accuracy": -0.1}, "baseline accuracy must be in [0, 1], got -0.1"),
        ({"baseline_accuracy": 1.5}, "baseline accuracy must be in [0, 1], got 1.5"),
        ({"alpha": 0.0}, "alpha must be in (0, 1], got 0.0"),
        ({"alpha": 1.5}, "alpha must be in (0, 1], got 1.5"),
        ({"margin": -0.01}, "margin must be >= 0, got -0.01"),
        ({"min_lift_over_baseline": -0.1}, "min_lift_over_baseline must be >= 0, got -0.1"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, float], message: str) -> None:
    challenger, champion = paired(3, 1)
    with pytest.raises(ValueError) as info:
        decide_promotion(challenger, champion, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"baseline_accuracy": 0.0},
        {"baseline_accuracy": 0.5},
        {"alpha": 1.0},
        {"alpha": 0.5},
        {"margin": 0.5},
        {"min_lift_over_baseline": 0.5},
    ],
)
def test_arguments_at_their_valid_bounds(kwargs: dict[str, float]) -> None:
    challenger, champion = paired(3, 1)
    decision = decide_promotion(challenger, champion, **kwargs)
    assert decision.n == 4


def test_no_held_out_row_raises() -> None:
    with pytest.raises(ValueError) as info:
        decide_promotion([], None)
    assert str(info.value) == "the gate needs at least one held-out row"
    assert decide_promotion([True], None).n == 1
    assert decide_promotion([True], [False]).challenger_only == 1


def test_unpaired_rows_raise() -> None:
    with pytest.raises(ValueError) as info:
        decide_promotion([True, False, True], [True, False])
    assert str(info.value) == "paired rows differ: (3,) vs (2,)"


# --------------------------------------------------------------------------------------
# The statistical contract, across seeds
# --------------------------------------------------------------------------------------


def promotion_rate(cells: tuple[float, float, float, float], alpha: float) -> float:
    """Share of seeds promoted; per row, cells are P(both right, both wrong, only the
    challenger right, only the champion right), ``ROWS`` held-out rows."""
    promoted = 0
    for seed in range(SEEDS):
        cell = np.random.default_rng(seed).choice(4, size=ROWS, p=cells)
        challenger = (cell == 0) | (cell == 2)
        champion = (cell == 0) | (cell == 3)
        promoted += decide_promotion(challenger, champion, alpha=alpha).promote
    return promoted / SEEDS


@pytest.mark.parametrize(
    ("cells", "alpha"),
    [
        ((0.70, 0.20, 0.05, 0.05), 0.05),  # models that mostly agree (measured 0.036)
        ((0.50, 0.10, 0.20, 0.20), 0.05),  # models that often disagree (0.046)
        ((0.70, 0.20, 0.05, 0.05), 0.01),  # (0.0065)
    ],
)
def test_equal_models_promote_at_most_alpha_of_the_time(
    cells: tuple[float, float, float, float], alpha: float
) -> None:
    assert promotion_rate(cells, alpha) <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / SEEDS)


def test_a_clearly_better_challenger_promotes() -> None:
    # 0.82 vs 0.73 on 336 rows, 15 % discordant: measured 0.9945.
    assert promotion_rate((0.70, 0.15, 0.12, 0.03), 0.05) >= 0.98
