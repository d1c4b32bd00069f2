"""The promotion gate: a challenger replaces the champion only when it is clearly better.

Clearly better than the champion, on the same held-out rows, by a margin that is
significant for that sample size; and better than a model that learnt nothing (always
answering the majority class of the held-out rows).

The paired test is McNemar's (McNemar 1947, "Note on the sampling error of the difference
between correlated proportions", Psychometrika 12), exact and one-sided: of the rows where
the two models disagree on correctness, the challenger must be right on significantly more
than half (``scipy.stats.binomtest(b, b + c, 0.5, alternative="greater")``). Dietterich
(1998, "Approximate statistical tests for comparing supervised classification learning
algorithms", Neural Computation 10(7)) recommends it for two classifiers scored on one
held-out set: its false-promotion rate is at most ``alpha`` when the two are equally good.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

FLOAT_SLACK = 1e-9


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the gate; ``reason`` is a sentence fit for a log line or a notification.

    Attributes:
        promote: the verdict.
        challenger_accuracy: on the held-out rows (0..1).
        champion_accuracy: on the same rows, None without a champion.
        margin: required accuracy gain over the champion (absolute).
        reason: one sentence.
        baseline_accuracy: majority-class accuracy of the held-out rows, None if unused.
        alpha: level of the paired test.
        p_value: one-sided exact McNemar p-value, None without a champion.
        n: held-out rows.
        challenger_only: rows only the challenger gets right (McNemar's b).
        champion_only: rows only the champion gets right (McNemar's c).
    """

    promote: bool
    challenger_accuracy: float
    champion_accuracy: float | None
    margin: float
    reason: str
    baseline_accuracy: float | None = None
    alpha: float = 0.05
    p_value: float | None = None
    n: int = 0
    challenger_only: int = 0
    champion_only: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def mcnemar_p_value(challenger_only: int, champion_only: int) -> float:
    """Exact one-sided McNemar p-value that the challenger is right more often.

    Args:
        challenger_only: rows only the challenger gets right (b).
        champion_only: rows only the champion gets right (c).

    Returns:
        ``P(X >= b)`` for ``X ~ Binomial(b + c, 1/2)``; 1.0 when ``b + c == 0``.

    Raises:
        ValueError: a count is negative.
    """
    if challenger_only < 0 or champion_only < 0:
        raise ValueError(f"counts must be >= 0, got {challenger_only}, {champion_only}")
    discordant = challenger_only + champion_only
    if discordant == 0:
        return 1.0
    test = stats.binomtest(challenger_only, discordant, alternative="greater")  # p=1/2
    return float(test.pvalue)


def decide_promotion(
    challenger_correct: Sequence[bool] | np.ndarray,
    champion_correct: Sequence[bool] | np.ndarray | None,
    *,
    baseline_accuracy: float | None = None,
    alpha: float = 0.05,
    margin: float = 0.0,
    min_lift_over_baseline: float = 0.0,
) -> PromotionDecision:
    """Promote iff the challenger beats the no-information floor, then the champion.

    Three rules, in order, all on the same held-out rows (the newest batch):

    1. **No-information floor** (when ``baseline_accuracy`` is given, the first model
       included): ``challenger accuracy > baseline + min_lift_over_baseline``. A held-out
       set holding a single class (baseline 1.0) never promotes.
    2. No champion yet: the first model bootstraps.
    3. **Champion**: the accuracy gain exceeds ``margin`` *and* the exact one-sided McNemar
       test rejects "not better" at level ``alpha``.

    Args:
        challenger_correct: per held-out row, whether the challenger is right (n,).
        champion_correct: the same for the champion (n,), or None without a champion.
        baseline_accuracy: majority-class accuracy of the same rows (0..1), or None.
        alpha: level of the paired test (``IAC_PROMOTION_ALPHA``), in (0, 1].
        margin: required accuracy gain over the champion, absolute (0.01 = one point).
        min_lift_over_baseline: required gain over the baseline, absolute.

    Raises:
        ValueError: no held-out row, arrays of different lengths, ``baseline_accuracy``
            outside [0, 1], ``alpha`` outside (0, 1], or a negative margin.
    """
    challenger = np.asarray(challenger_correct, dtype=bool)
    champion = None if champion_correct is None else np.asarray(champion_correct, dtype=bool)
    if challenger.size == 0:
        raise ValueError("the gate needs at least one held-out row")
    if champion is not None and champion.shape != challenger.shape:
        raise ValueError(f"paired rows differ: {challenger.shape} vs {champion.shape}")
    if baseline_accuracy is not None and (
        math.isnan(baseline_accuracy) or not 0.0 <= baseline_accuracy <= 1.0
    ):
        raise ValueError(f"baseline accuracy must be in [0, 1], got {baseline_accuracy}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if min_lift_over_baseline < 0:
        raise ValueError(f"min_lift_over_baseline must be >= 0, got {min_lift_over_baseline}")

    n = int(challenger.size)
    challenger_accuracy = float(challenger.mean())
    champion_accuracy = None if champion is None else float(champion.mean())
    b = c = 0
    p_value = None
    if champion is not None:
        b = int(np.sum(challenger & ~champion))
        c = int(np.sum(champion & ~challenger))
        p_value = mcnemar_p_value(b, c)

    def decided(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            promote=promote,
            challenger_accuracy=challenger_accuracy,
            champion_accuracy=champion_accuracy,
            margin=margin,
            reason=reason,
            baseline_accuracy=baseline_accuracy,
            alpha=alpha,
            p_value=p_value,
            n=n,
            challenger_only=b,
            champion_only=c,
        )

    if baseline_accuracy is not None:
        lift = challenger_accuracy - baseline_accuracy
        # Accuracies are ratios of counts: 0.76 - 0.75 is 0.010000000000000009 in floats.
        if not lift > min_lift_over_baseline + FLOAT_SLACK:
            single = " (the held-out rows hold a single class)" if baseline_accuracy >= 1 else ""
            return decided(
                False,
                f"challenger accuracy {challenger_accuracy:.3f} does not beat the "
                f"majority-class baseline {baseline_accuracy:.3f}{single} by more than "
                f"{min_lift_over_baseline:.3f}: the champion stays",
            )
    if champion_accuracy is None:
        return decided(True, "no champion yet: the first model bootstraps")
    assert p_value is not None  # set together with champion_accuracy
    gain = challenger_accuracy - champion_accuracy
    paired = (
        f"McNemar p={p_value:.3g} ({b} rows only the challenger gets right, {c} only the champion)"
    )
    if not gain > margin + FLOAT_SLACK:
        return decided(
            False,
            f"challenger gain {gain:+.3f} on {n} rows does not exceed margin {margin:.3f}: "
            "the champion stays",
        )
    if not p_value < alpha:
        return decided(
            False,
            f"challenger gain {gain:+.3f} on {n} rows is not significant ({paired} >= "
            f"alpha {alpha:g}): the champion stays",
        )
    return decided(
        True, f"challenger beats champion by {gain:+.3f} on {n} rows, {paired} < alpha {alpha:g}"
    )
