"""The retraining policy: when a drift report should trigger a retrain."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain, and why (one sentence)."""

    retrain: bool
    reason: str


def decide_retrain(
    *,
    has_champion: bool,
    concept_drift: bool,
    data_drift: bool,
    retrain_on_data_drift: bool = False,
    force: bool = False,
    champion_problem: str | None = None,
) -> RetrainDecision:
    """Retrain when forced, when no champion exists, or on performance (concept) drift.

    Data drift alone only warns, unless ``retrain_on_data_drift``: a shifted input
    distribution does not by itself mean the model got worse (the exercise's rule:
    retrain only when performance falls below a threshold). A champion that cannot be
    loaded (``champion_problem``, one sentence) is as good as none: retrain.
    """
    if force:
        return RetrainDecision(True, "manual retrain requested")
    if not has_champion:
        return RetrainDecision(True, "no champion yet")
    if champion_problem:
        return RetrainDecision(True, f"{champion_problem}: retrain to replace it")
    if concept_drift:
        return RetrainDecision(True, "performance drift: champion accuracy fell below threshold")
    if data_drift and retrain_on_data_drift:
        return RetrainDecision(True, "data drift and IAC_RETRAIN_ON_DATA_DRIFT=true")
    if data_drift:
        return RetrainDecision(False, "data drift without performance loss: warn only")
    return RetrainDecision(False, "no drift")
