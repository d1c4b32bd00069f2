"""The promotion gate: a challenger replaces the champion only when it is clearly better."""

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def decide_promotion(
    challenger_accuracy: float, champion_accuracy: float | None, margin: float = 0.0
) -> PromotionDecision:
    """Promote iff there is no champion yet or ``challenger > champion + margin``.

    Both accuracies must come from the same held-out rows (the newest batch).

    Args:
        challenger_accuracy: challenger accuracy on the held-out rows (0..1).
        champion_accuracy: champion accuracy on the same rows, or None without a champion.
        margin: required improvement, absolute (0.01 = one accuracy point).

    Raises:
        ValueError: an accuracy is not a number in [0, 1] or ``margin`` is negative.
    """
    for name, value in [("challenger", challenger_accuracy), ("champion", champion_accuracy)]:
        if value is not None and (math.isnan(value) or not 0.0 <= value <= 1.0):
            raise ValueError(f"{name} accuracy must be in [0, 1], got {value}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if champion_accuracy is None:
        return PromotionDecision(
            True, challenger_accuracy, None, margin, "no champion yet: the first model bootstraps"
        )
    gain = challenger_accuracy - champion_accuracy
    # Accuracies are ratios of counts: 0.76 - 0.75 is 0.010000000000000009 in floats.
    if gain > margin + FLOAT_SLACK:
        reason = f"challenger beats champion by {gain:+.3f} (> margin {margin:.3f})"
        return PromotionDecision(True, challenger_accuracy, champion_accuracy, margin, reason)
    reason = f"challenger gain {gain:+.3f} does not exceed margin {margin:.3f}"
    return PromotionDecision(False, challenger_accuracy, champion_accuracy, margin, reason)
