"""The project's own policies on an in-memory stream, through the real cycle code.

Same protocol as the baselines (``bench/baselines.py``): batch 0 bootstraps the first
champion exactly like the flows' first cycle (``cycle.train_and_gate`` on a single batch:
its first 3/4 train, its last 1/4 is held out); then for each batch ``t >= 1`` the model
in place predicts the whole batch *before* the policy may learn from it.

* ``never``: the bootstrap champion serves forever.
* ``every_batch``: every batch, ``cycle.train_and_gate`` on the window ending at ``t``
  (the same window choice as ours) and the chosen window's model, refitted to include
  batch ``t``, is promoted without a gate.
* ``ours``: the real cycle. ``cycle.evaluate_drift`` on in-memory
  :class:`~ia_continu.loop.cycle.DriftInputs` (the champion's
  :class:`~ia_continu.training.registry.ModelRef` with the validation accuracy and row count the
  registry stores, its training batches as the reference window, and its service record
  as the drift reports in the database would give it); on a retrain decision
  ``cycle.train_and_gate`` on an in-memory :class:`~ia_continu.loop.cycle.TrainingWindow`
  carrying the report's change point; a passing gate makes the returned model champion
  with the tags ``cycle.record_challenger`` registers.

Only the database and MLflow round trips are replaced (``bench/cycle_wall_time.py``
times those); every decision, window, model and gate is the project's own code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.stream_report import PolicyTrace
from bench.stream_suite import frame_of
from ia_continu.loop import cycle
from ia_continu.loop.results import GateResult
from ia_continu.monitoring.concept_drift import BatchScore, ErrorCount
from ia_continu.settings import Settings
from ia_continu.training import registry
from ia_continu.training.trainer import train

MODEL_NAME = "bench-streams"


@dataclass
class Champion:
    """The serving model, its registry reference and its service record."""

    ref: registry.ModelRef
    model: Any
    service: list[BatchScore] = field(default_factory=list)
    last_retrain: int = 0  # batch of the last retrain attempt (the database's drift reports)


def window_at(
    name: str,
    schema: Any,
    batches: list[pd.DataFrame],
    t: int,
    settings: Settings,
    champion: Champion | None,
    change_batch_id: int | None = None,
) -> cycle.TrainingWindow:
    """``cycle.load_training_window`` at batch ``t``, from memory."""
    ids = list(range(max(0, t - max(settings.training_window_batches)), t + 1))
    return cycle.TrainingWindow(
        source=name,
        schema=schema,
        frame=frame_of(batches, ids),
        batch_ids=ids,
        champion=champion.ref if champion else None,
        champion_model=champion.model if champion else None,
        change_batch_id=change_batch_id,
        min_holdout_rows=settings.min_batch_rows,
    )


def promoted(
    window: cycle.TrainingWindow, model: Any, decision: GateResult, champion: Champion | None
) -> Champion:
    """What ``cycle.record_challenger`` leaves behind the ``champion`` alias."""
    ref = registry.ModelRef(
        name=MODEL_NAME,
        version=champion.ref.version + 1 if champion else 1,
        run_id=None,
        validation_accuracy=float(f"{decision.challenger_accuracy or 0.0:.6f}"),
        training_batch_ids=list(decision.training_batch_ids),
        source=window.source,
        validation_rows=decision.holdout_rows,
        holdout_batch_id=window.holdout_batch_id,
    )
    return Champion(ref, model, last_retrain=window.holdout_batch_id)


def bootstrap(name: str, schema: Any, batches: list[pd.DataFrame], settings: Settings) -> Champion:
    """The flows' first cycle: no champion, train on batch 0 (last quarter held out)."""
    window = window_at(name, schema, batches, 0, settings, None)
    model, decision = cycle.train_and_gate(window, settings)
    if not decision.promote:
        # The baseline floor can refuse even the first model: the flows then have no
        # champion and retrain next cycle; the bench serves it anyway to keep one protocol.
        decision = decision.model_copy(update={"promote": True})
    return promoted(window, model, decision, None)


Step = Callable[
    [str, Any, list[pd.DataFrame], int, Settings, Champion], tuple[Champion, dict[str, Any]]
]


def step_never(
    _n: str, _s: Any, _b: list[pd.DataFrame], _t: int, _c: Settings, champion: Champion
) -> tuple[Champion, dict[str, Any]]:
    """Keep the bootstrap champion."""
    return champion, {}


def step_every_batch(
    name: str,
    schema: Any,
    batches: list[pd.DataFrame],
    t: int,
    settings: Settings,
    champion: Champion,
) -> tuple[Champion, dict[str, Any]]:
    """Choose the window ending at ``t``, train, promote without a gate."""
    window = window_at(name, schema, batches, t, settings, champion)
    model, decision = cycle.train_and_gate(window, settings)
    info = {"retrain": True}
    if model is None:
        return champion, info
    choice = decision.window
    if settings.refit_on_holdout and not decision.refit and choice is not None:
        try:
            model = train(
                frame_of(batches, list(choice.refit_batch_ids)),
                schema,
                settings.estimator,
                settings.estimator_params,
            )
            decision = decision.model_copy(
                update={"training_batch_ids": list(choice.refit_batch_ids)}
            )
        except ValueError:
            pass
    info["promoted"] = True
    return promoted(window, model, decision, champion), info


def step_ours(
    name: str,
    schema: Any,
    batches: list[pd.DataFrame],
    t: int,
    settings: Settings,
    champion: Champion,
) -> tuple[Champion, dict[str, Any]]:
    """The real cycle: ``evaluate_drift``; on a retrain decision ``train_and_gate``."""
    newest = batches[t]
    reference = frame_of(batches, champion.ref.training_batch_ids)
    inputs = cycle.DriftInputs(
        name,
        schema,
        [t],
        newest,
        newest,
        champion.ref,
        reference,
        champion.model,
        service=list(champion.service),
        cycles_since_retrain=t - champion.last_retrain,
    )
    report = cycle.evaluate_drift(inputs, settings)
    performance = report.performance
    if performance is None:
        raise ValueError("a bench champion always has a concept-drift test")
    champion.service.append(
        BatchScore(t, ErrorCount(performance.n, performance.errors), performance.drift)
    )
    info: dict[str, Any] = {
        "concept_drift": report.concept_drift,
        "data_drift": report.has_data_drift,
        "reason": report.decision.reason,
    }
    if not report.decision.retrain:
        return champion, info
    info["retrain"] = True
    champion.last_retrain = t
    window = window_at(name, schema, batches, t, settings, champion, performance.change_batch_id)
    model, decision = cycle.train_and_gate(window, settings)
    info["gate"] = decision.reason
    info["window"] = decision.window.label if decision.window else None
    if model is None or not decision.promote:
        return champion, info
    info["promoted"] = True
    return promoted(window, model, decision, champion), info


STEPS: dict[str, Step] = {
    "never": step_never,
    "every_batch": step_every_batch,
    "ours": step_ours,
}


def run_policy(
    policy: str, name: str, schema: Any, batches: list[pd.DataFrame], settings: Settings
) -> PolicyTrace:
    """Bootstrap on batch 0, then test-then-train over batches 1..end."""
    started = time.perf_counter()
    step = STEPS[policy]
    trace = PolicyTrace(policy)
    champion = bootstrap(name, schema, batches, settings)
    windows: dict[str, int] = {}
    for t in range(1, len(batches)):
        batch = batches[t]
        labelled = batch[batch[schema.target].notna()]
        predicted = np.asarray(champion.model.predict(labelled[list(schema.features)]))
        champion, info = step(name, schema, batches, t, settings, champion)
        if info.get("window"):
            windows[info["window"]] = windows.get(info["window"], 0) + 1
        trace.add(
            t,
            labelled[schema.target].to_numpy(),
            predicted,
            retrain=bool(info.get("retrain")),
            promoted=bool(info.get("promoted")),
            concept_drift=info.get("concept_drift"),
            data_drift=info.get("data_drift"),
        )
    trace.seconds = time.perf_counter() - started
    if windows:
        trace.notes = "windows chosen: " + ", ".join(
            f"{k} x{v}" for k, v in sorted(windows.items())
        )
    return trace
