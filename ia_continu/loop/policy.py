"""The retraining policy: when a drift report should trigger a retrain."""

from __future__ import annotations

from ia_continu.loop.results import RetrainDecision


def decide_retrain(
    *,
    has_champion: bool,
    concept_drift: bool,
    data_drift: bool,
    concept_reason: str | None = None,
    retrain_on_data_drift: bool = False,
    force: bool = False,
    champion_problem: str | None = None,
    cycles_since_retrain: int | None = None,
    challenge_every: int = 0,
) -> RetrainDecision:
    """Retrain when forced, when no champion exists, or on concept drift.

    Concept drift is the champion's error rate on the newest batch significantly above its
    reference (``ia_continu.monitoring.concept_drift``; ``concept_reason`` says by how much). Data
    drift alone only warns, unless ``retrain_on_data_drift``: a shifted input distribution
    does not by itself mean the model got worse (covariate shift under a fixed concept,
    Moreno-Torres et al. 2012, "A unifying view on dataset shift in classification",
    Pattern Recognition 45(1)). A champion that cannot be loaded (``champion_problem``, one
    sentence) is as good as none: retrain.

    **Scheduled challenge**: with ``challenge_every`` > 0, a challenger is also trained when
    ``cycles_since_retrain`` (cycles since the last retrain attempt, any trigger) reaches
    it. A slow (gradual) drift raises the error too little per batch for the detector to
    call it soon, and a champion trained on few rows gains from the rows that arrived since;
    the promotion gate still keeps the champion unless the challenger is significantly
    better. Retraining on a schedule and on performance decay are the two triggers of
    Google Cloud's "MLOps: Continuous delivery and automation pipelines in machine
    learning" (Architecture Center, level 1, "pipeline triggers").
    """
    if force:
        return RetrainDecision(retrain=True, reason="manual retrain requested", trigger="manual")
    if not has_champion:
        return RetrainDecision(retrain=True, reason="no champion yet", trigger="bootstrap")
    if champion_problem:
        return RetrainDecision(
            retrain=True, reason=f"{champion_problem}: retrain to replace it", trigger="drift"
        )
    if concept_drift:
        return RetrainDecision(
            retrain=True,
            reason=concept_reason or "concept drift: champion error rate rose",
            trigger="drift",
        )
    if data_drift and retrain_on_data_drift:
        return RetrainDecision(
            retrain=True, reason="data drift and IAC_RETRAIN_ON_DATA_DRIFT=true", trigger="drift"
        )
    if challenge_every > 0:
        if cycles_since_retrain is not None and cycles_since_retrain >= challenge_every:
            return RetrainDecision(
                retrain=True,
                reason=f"scheduled challenge: {cycles_since_retrain} cycles since the last "
                f"retrain (IAC_CHALLENGE_EVERY_CYCLES={challenge_every})",
                trigger="schedule",
            )
    if data_drift:
        return RetrainDecision(
            retrain=False, reason="data drift without performance loss: warn only"
        )
    return RetrainDecision(retrain=False, reason="no drift")
