"""Which Discord notifications a cycle's results warrant, and what they say.

One notice per change of state, not per 30 s cycle: a quarantined batch, a champion that
cannot be loaded, concept drift, newly appeared data drift, the retrain outcome, and the
serving monitor's estimated-accuracy drop and newly appeared serving drift.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ia_continu.data.storage.repository import IngestResult
from ia_continu.loop.results import DriftSummary, RetrainOutcome, ServingSummary
from ia_continu.notify.discord import Status


class Notice(BaseModel):
    """One notification: ``discord.build_embed(**notice.model_dump())`` makes its embed.

    Attributes:
        status: picks the colour (``success``, ``failure``, ``warning``, ``drift``,
            ``info``).
        title: one line; ``description`` the body; ``fields`` name -> value.
    """

    model_config = ConfigDict(frozen=True)

    status: Status
    title: str
    description: str = ""
    fields: dict[str, str] = {}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def serving_notices(serving: ServingSummary | None) -> list[Notice]:
    """The serving monitor's notices: an estimated accuracy drop before labels arrive (a
    warning only: a retrain needs labels), and serving drift when a kind of it newly
    appears. Each once per change of state under one champion, like data drift."""
    if serving is None or serving.status != "reported":
        return []
    out = []
    if serving.warn_new:
        out.append(
            Notice(
                status="warning",
                title="Estimated accuracy dropped (no labels yet)",
                description="CBPE estimates the champion's accuracy on the newest served "
                "predictions well below its reference. It assumes no concept drift; no "
                "retrain until labels confirm it.",
                fields={
                    "estimated": _percent(serving.estimated_accuracy),
                    "interval": f"{_percent(serving.estimated_lower)} to "
                    f"{_percent(serving.estimated_upper)}",
                    "reference": _percent(serving.reference_accuracy),
                    "coverage": _percent(serving.label_coverage),
                    "champion version": str(serving.champion_version),
                },
            )
        )
    if serving.serving_drift_new:
        kinds = [
            k
            for k, on in (("inputs", serving.data_drift), ("predictions", serving.prediction_drift))
            if on
        ]
        out.append(
            Notice(
                status="drift",
                title=f"Serving drift detected ({' + '.join(kinds)})",
                description="The newest served predictions differ from the champion's "
                "reference window (no labels needed).",
                fields={
                    "drifted": ", ".join(serving.drifted_features) or "none",
                    "rows": str(serving.n_rows),
                    "coverage": _percent(serving.label_coverage),
                    "champion version": str(serving.champion_version),
                },
            )
        )
    return out


def cycle_notices(
    drift: DriftSummary | None,
    outcome: RetrainOutcome | None,
    batch: IngestResult | None = None,
    serving: ServingSummary | None = None,
) -> list[Notice]:
    """Notifications worth sending for one cycle.

    Args:
        drift: the drift summary, None when the cycle checked nothing (quarantine, or no
            labelled serving batch).
        outcome: the retrain outcome, None without a retrain.
        batch: the ingestion result: a newly quarantined batch is announced (a retry
            that finds it already quarantined is not).
        serving: the serving monitor's summary (:func:`serving_notices`).

    Returns:
        The serving notices, then a quarantined batch, a champion that cannot be loaded,
        concept drift or newly appeared data drift (a data drift that persists under the
        same champion is announced once), and the retrain outcome.
    """
    out = serving_notices(serving)
    if batch is not None and batch.quarantined and batch.created:
        out.append(
            Notice(
                status="warning",
                title=f"Batch at position {batch.position} quarantined",
                description=str(batch.reason),
                fields={
                    "source": batch.source,
                    "position": str(batch.position),
                    "rows": str(batch.n_rows),
                    "quarantine id": str(batch.quarantine_id),
                },
            )
        )
    if drift is None:
        return out
    if drift.champion_problem:
        out.append(
            Notice(
                status="failure",
                title=f"Champion version {drift.champion_version} cannot be loaded",
                description=f"{drift.champion_problem}; retraining to replace it "
                "(the API serves `previous` meanwhile)",
                fields={"batch": str(drift.batch_id)},
            )
        )
    if drift.concept_drift or drift.data_drift_new:
        kinds = [
            k for k, on in (("data", drift.data_drift), ("concept", drift.concept_drift)) if on
        ]
        out.append(
            Notice(
                status="drift",
                title=f"Drift detected ({' + '.join(kinds)})",
                description=drift.reason,
                fields={
                    "batch": str(drift.batch_id),
                    "champion version": str(drift.champion_version),
                    "champion accuracy": _fmt(drift.champion_accuracy),
                    "reference accuracy": _fmt(drift.reference_accuracy),
                    "drifted features": ", ".join(drift.drifted_features) or "none",
                },
            )
        )
    if outcome is not None:
        promoted = outcome.promoted
        out.append(
            Notice(
                status="success" if promoted else "warning",
                title=f"Model version {outcome.version} promoted to champion"
                if promoted
                else "Challenger rejected",
                description=outcome.reason,
                fields={
                    "model version": str(outcome.version or "-"),
                    "previous version": str(outcome.previous_version or "-"),
                    "challenger accuracy": _fmt(outcome.challenger_accuracy),
                    "champion accuracy": _fmt(outcome.champion_accuracy),
                    "training window": outcome.window or "-",
                    "trigger": outcome.trigger,
                },
            )
        )
    return out
