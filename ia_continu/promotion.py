"""The promotion gate: a challenger replaces the champion only when it is clearly better.

Better than the champion, and better than a model that learnt nothing (always answering
the majority class of the held-out rows).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

FLOAT_SLACK = 1e-9


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the gate; ``reason`` is a sentence fit for a log line or a notification."""

    promote: bool
    challenger_accuracy: float
    champion_accuracy: float | None
    margin: float
    reason: str
    baseline_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def decide_promotion(
    challenger_accuracy: float,
    champion_accuracy: float | None,
    margin: float = 0.0,
    *,
    baseline_accuracy: float | None = None,
    min_lift_over_baseline: float = 0.0,
) -> PromotionDecision:
    """Promote iff the challenger beats the no-information floor, then the champion.

    Two rules, in order, all accuracies on the same held-out rows (the newest batch):

    1. **No-information floor** (when ``baseline_accuracy`` is given, also for the first
       model): ``challenger > baseline + min_lift_over_baseline``. The baseline is the
       accuracy of always answering the held-out rows' majority class, so a held-out set
       holding a single class (baseline 1.0) never promotes: it cannot show that the
       model learnt anything.
    2. **Champion**: no champion yet, or ``challenger > champion + margin``.

    Args:
        challenger_accuracy: challenger accuracy on the held-out rows (0..1).
        champion_accuracy: champion accuracy on the same rows, or None without a champion.
        margin: required improvement over the champion, absolute (0.01 = one point).
        baseline_accuracy: majority-class accuracy on the same rows (0..1), or None to
            skip rule 1.
        min_lift_over_baseline: required improvement over the baseline, absolute
            (``IAC_PROMOTION_MIN_LIFT_OVER_BASELINE``).

    Raises:
        ValueError: an accuracy is not a number in [0, 1], or ``margin`` or
            ``min_lift_over_baseline`` is negative.
    """
    for name, value in [
        ("challenger", challenger_accuracy),
        ("champion", champion_accuracy),
        ("baseline", baseline_accuracy),
    ]:
        if value is not None and (math.isnan(value) or not 0.0 <= value <= 1.0):
            raise ValueError(f"{name} accuracy must be in [0, 1], got {value}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if min_lift_over_baseline < 0:
        raise ValueError(f"min_lift_over_baseline must be >= 0, got {min_lift_over_baseline}")

    def decided(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            promote,
            challenger_accuracy,
            champion_accuracy,
            margin,
            reason,
            baseline_accuracy,
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
                f"{min_lift_over_baseline:.3f}",
            )
    if champion_accuracy is None:
        return decided(True, "no champion yet: the first model bootstraps")
    gain = challenger_accuracy - champion_accuracy
    if gain > margin + FLOAT_SLACK:
        return decided(True, f"challenger beats champion by {gain:+.3f} (> margin {margin:.3f})")
    return decided(False, f"challenger gain {gain:+.3f} does not exceed margin {margin:.3f}")
