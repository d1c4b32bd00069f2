"""Typed results of a cycle: what crosses from ``cycle`` to the flows, Discord and Prometheus.

Pydantic models (frozen, JSON-serialisable, so Prefect can keep them as flow and task
results): the drift report and its summary, the retrain decision, the promotion gate's
result and the retrain outcome. Stored forms keep the field names the database, MLflow
and the console have always read (``DriftReport.to_json``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import pandas as pd
from pydantic import BaseModel, ConfigDict, field_serializer, model_validator

from ia_continu.data.storage.repository import IngestResult
from ia_continu.monitoring.concept_drift import ConceptDrift
from ia_continu.monitoring.data_drift import DataDriftReport
from ia_continu.training.windows import WindowChoice

#: Why a challenger was trained: no champion yet, an operator asked, drift (or a champion
#: that cannot be loaded), or the scheduled challenge (``IAC_CHALLENGE_EVERY_CYCLES``).
Trigger = Literal["bootstrap", "manual", "drift", "schedule"]
TRIGGERS: tuple[Trigger, ...] = get_args(Trigger)


def parse_trigger(value: str) -> Trigger:
    """``value`` as a :data:`Trigger` (flow parameters stay plain text).

    Raises:
        ValueError: ``value`` is not one of :data:`TRIGGERS`.
    """
    for trigger in TRIGGERS:
        if value == trigger:
            return trigger
    raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, got {value!r}")


#: Where the serving monitor's output reference comes from: the champion's out-of-sample
#: outputs stored with its calibrator, or (fallback) its outputs on its training rows.
OutputReference = Literal["held_out", "training"]


@runtime_checkable
class Model(Protocol):
    """A fitted classifier as the loop uses it: a scikit-learn pipeline, or the model an
    MLflow flavour loads back. ``predict`` takes rows of features, shape (n, features),
    and returns n labels."""

    def predict(self, X: pd.DataFrame, /) -> Any:  # noqa: D102 - the class says it
        ...


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)


class RetrainDecision(_Result):
    """Whether a cycle retrains, why (one sentence), and the trigger recorded on the
    challenger (set exactly when ``retrain``).

    Raises:
        pydantic.ValidationError: ``trigger`` is missing with ``retrain`` or given without.
    """

    retrain: bool
    reason: str
    trigger: Trigger | None = None

    @model_validator(mode="after")
    def _trigger_with_retrain(self) -> RetrainDecision:
        if self.retrain != (self.trigger is not None):
            raise ValueError("a trigger is given exactly when the cycle retrains")
        return self


class FeatureSummary(_Result):
    """One feature's drift test, as notifications and metrics show it (see
    :class:`ia_continu.monitoring.data_drift.FeatureDrift`)."""

    feature: str
    test: Literal["ks", "chi2"]
    statistic: float
    p_adjusted: float
    effect: float
    drifted: bool


class DriftSummary(_Result):
    """The small view of a drift report that the flow passes to Discord and Prometheus.

    Accuracies and p-values are fractions in 0..1, None when not computed (no champion,
    or no reference).
    """

    id: str
    batch_id: int
    champion_version: int | None
    champion_problem: str | None = None
    data_drift: bool
    data_drift_new: bool
    drifted_features: list[str]
    concept_drift: bool
    champion_accuracy: float | None = None
    reference_accuracy: float | None = None
    concept_drift_p_value: float | None = None
    change_batch_id: int | None = None
    features: list[FeatureSummary] = []
    retrain: bool
    trigger: Trigger | None = None
    reason: str


class DriftReport(_Result):
    """Data drift, concept drift and the retrain decision on the newest batch.

    Attributes:
        id: fresh hex id (the stored report's key).
        created_at: when it was made (UTC).
        data_drift_new: data drift that the previous report under the same champion did
            not have (notifications announce a change of state, not every cycle).
        batch_id: the newest batch; ``current_batch_ids`` the current window.
        reference_batch_ids: the champion's training batches (the reference window).
        champion_problem: why the champion could not be loaded, or None.
        data_drift: reference vs current window (None without a champion or reference).
        performance: the concept-drift test (None without a loadable champion).
        decision: whether to retrain, why and with which trigger.
    """

    id: str
    created_at: datetime
    data_drift_new: bool
    source: str
    batch_id: int
    current_batch_ids: list[int]
    reference_batch_ids: list[int]
    champion_version: int | None
    champion_problem: str | None = None
    data_drift: DataDriftReport | None = None
    performance: ConceptDrift | None = None
    decision: RetrainDecision

    @field_serializer("created_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()

    @field_serializer("data_drift")
    def _data_drift(self, value: DataDriftReport | None) -> dict[str, Any] | None:
        return value.to_dict() if value is not None else None  # with drift_share

    @property
    def concept_drift(self) -> bool:
        """The concept-drift verdict (False when no test ran)."""
        return bool(self.performance and self.performance.drift)

    @property
    def has_data_drift(self) -> bool:
        """The dataset-level data-drift verdict (False when no test ran)."""
        return bool(self.data_drift and self.data_drift.drift)

    def to_json(self) -> dict[str, Any]:
        """The stored form (database row, MLflow artifact): plain JSON types, times as
        ISO 8601 text."""
        return self.model_dump(mode="json")

    def summary(self) -> DriftSummary:
        """The view notifications and metrics read."""
        data, perf = self.data_drift, self.performance
        return DriftSummary(
            id=self.id,
            batch_id=self.batch_id,
            champion_version=self.champion_version,
            champion_problem=self.champion_problem,
            data_drift=self.has_data_drift,
            data_drift_new=self.data_drift_new,
            drifted_features=list(data.drifted_features) if data else [],
            concept_drift=self.concept_drift,
            champion_accuracy=perf.accuracy if perf else None,
            reference_accuracy=perf.reference_accuracy if perf else None,
            concept_drift_p_value=perf.p_value if perf else None,
            change_batch_id=perf.change_batch_id if perf else None,
            features=[
                FeatureSummary(
                    feature=f.feature,
                    test=f.test,
                    statistic=f.statistic,
                    p_adjusted=f.p_adjusted,
                    effect=f.effect,
                    drifted=f.drifted,
                )
                for f in (data.features if data else [])
            ],
            retrain=self.decision.retrain,
            trigger=self.decision.trigger,
            reason=self.decision.reason,
        )


class GateResult(_Result):
    """What ``train_and_gate`` decided about a challenger, and about the model it returns.

    Attributes:
        promote: the gate's verdict (:class:`ia_continu.training.promotion.PromotionDecision`).
        challenger_accuracy: the gated challenger on the held-out rows (0..1), None
            without a challenger.
        champion_accuracy: the champion on the same rows, None without a champion.
        baseline_accuracy: the majority class on them, None when not computed.
        p_value: one-sided exact McNemar p-value, None without a champion.
        margin: the accuracy gain required over the champion (absolute).
        reason: one sentence.
        window: the training window chosen, None without a challenger.
        training_batch_ids: batches the returned model was trained on.
        train_rows: its training rows; ``holdout_rows`` the labelled held-out rows.
        model_holdout_accuracy: the returned model on the held-out rows (what the
            registry load-back must reproduce), None without a challenger.
        refit: the returned model was refitted on the held-out batch
            (``IAC_REFIT_ON_HOLDOUT``).
        challenger_macro_f1: macro-averaged F1 of the gated challenger, and
            ``champion_macro_f1`` of the champion, on the held-out rows.
        calibration: CBPE's calibrator as JSON (``cycle.fit_calibration``), or None.
    """

    promote: bool
    challenger_accuracy: float | None
    champion_accuracy: float | None
    baseline_accuracy: float | None = None
    p_value: float | None = None
    margin: float
    reason: str
    window: WindowChoice | None = None
    training_batch_ids: list[int] = []
    train_rows: int = 0
    holdout_rows: int = 0
    model_holdout_accuracy: float | None = None
    refit: bool = False
    challenger_macro_f1: float | None = None
    champion_macro_f1: float | None = None
    calibration: dict[str, object] | None = None

    @classmethod
    def no_challenger(
        cls, *, why: str, champion_accuracy: float, margin: float, holdout_rows: int
    ) -> GateResult:
        """No challenger could be trained (``why``: one clause); the champion stays."""
        return cls(
            promote=False,
            challenger_accuracy=None,
            champion_accuracy=champion_accuracy,
            margin=margin,
            reason=f"no challenger: {why}; the champion stays",
            holdout_rows=holdout_rows,
        )


class RetrainOutcome(_Result):
    """What a retrain did: challenger logged, registered, promoted or not, and why.

    Attributes:
        promoted: ``champion`` now points at ``version``.
        version: the registered version (also when the load-back rejected it), None when
            nothing was registered.
        previous_version: the champion before (after a promotion: the ``previous`` alias).
        run_id: the challenger's MLflow run, None without a challenger.
        challenger_accuracy, champion_accuracy, baseline_accuracy, p_value: the gate's
            (0..1 or None).
        window: label of the training window chosen (``since_change``, ``last_<k>``,
            ``bootstrap``), None without a challenger.
        reason: one sentence.
        trigger: why the challenger was trained.
        drift_report_id: the drift report that asked for it, if any.
    """

    promoted: bool = False
    version: int | None = None
    previous_version: int | None = None
    run_id: str | None = None
    challenger_accuracy: float | None
    champion_accuracy: float | None
    baseline_accuracy: float | None = None
    p_value: float | None = None
    window: str | None = None
    reason: str
    trigger: Trigger
    drift_report_id: str | None = None

    @classmethod
    def of_gate(
        cls,
        gate: GateResult,
        *,
        previous_version: int | None,
        trigger: Trigger,
        drift_report_id: str | None,
    ) -> RetrainOutcome:
        """The outcome before anything is logged or registered: the gate's figures."""
        return cls(
            previous_version=previous_version,
            challenger_accuracy=gate.challenger_accuracy,
            champion_accuracy=gate.champion_accuracy,
            baseline_accuracy=gate.baseline_accuracy,
            p_value=gate.p_value,
            window=gate.window.label if gate.window else None,
            reason=gate.reason,
            trigger=trigger,
            drift_report_id=drift_report_id,
        )


class ServingSummary(BaseModel):
    """What one serving-monitor look reports to the flow, Discord and Prometheus.

    Attributes:
        status: ``reported`` (a ``serving_reports`` row was stored), ``no_champion``,
            ``no_reference`` (the champion cannot be loaded or has no lineage) or
            ``no_window`` (nothing served yet); ``reason`` says why in one sentence.
        report_id: the stored report (``stored`` True), else None.
        label_coverage: share of the window already labelled (0..1), None without rows.
        window_start, window_end: ``served_at`` of the window's oldest and newest rows
            (UTC).
        data_drift, prediction_drift: served inputs / outputs drifted from the champion's
            reference; ``drifted_features`` names the columns.
        serving_drift_new: a kind of serving drift is on that was off in the previous
            report of the same champion.
        estimated_accuracy, estimated_lower, estimated_upper: CBPE's estimate and its
            interval (0..1), None when it could not be made (see ``problems``).
        reference_accuracy: the calibrator's reference accuracy (0..1).
        warn: the estimate dropped (see :class:`ia_continu.monitoring.serving_monitor.ServingReport`); ``warn_new``: and the
            previous report of the same champion did not warn.
        output_reference: ``held_out`` or ``training`` (see :class:`ia_continu.monitoring.serving_monitor.ServingReport`).
        realised_filled: older reports whose realised accuracy was filled now.
        realised_accuracy, realised_rows, realised_estimate, realised_report_id: the
            newest report whose labels have landed, None before any.
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["", "reported", "no_champion", "no_reference", "no_window"] = ""
    stored: bool = False
    report_id: str | None = None
    source: str
    champion_version: int | None = None
    reason: str = ""
    n_rows: int = 0
    labelled_rows: int = 0
    label_coverage: float | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    data_drift: bool = False
    prediction_drift: bool = False
    drifted_features: list[str] = []
    serving_drift_new: bool = False
    estimated_accuracy: float | None = None
    estimated_lower: float | None = None
    estimated_upper: float | None = None
    reference_accuracy: float | None = None
    warn: bool = False
    warn_new: bool = False
    output_reference: OutputReference | None = None
    problems: list[str] = []
    realised_filled: int = 0
    realised_accuracy: float | None = None
    realised_rows: int | None = None
    realised_estimate: float | None = None
    realised_report_id: str | None = None


class CycleResult(_Result):
    """One ``continuous_training`` cycle: the batch, the drift summary (None when nothing
    was checked: a quarantined batch, or no labelled serving batch), the retrain outcome
    (None without a retrain, or when it was skipped) and the serving monitor's summary
    (serving mode only)."""

    batch: IngestResult
    drift: DriftSummary | None = None
    retrain: RetrainOutcome | None = None
    serving: ServingSummary | None = None
