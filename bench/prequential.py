"""Prequential (test-then-train) replay of Elec2 under three retraining policies.

Every batch ``t >= 1`` is first predicted by the model in place *before* the policy may
learn from it; accuracy is counted over all those test rows. Then the policy updates:

* ``never``: the bootstrap model (trained on batch 0, as the flows do) is kept forever;
* ``every_batch``: a challenger is trained on the flows' sliding window ending at ``t``
  (newest ``training_window_batches + 1`` batches, the newest held out) and promoted
  without a gate;
* ``on_drift`` (IA Continu): the real cycle. ``ia_continu.cycle.evaluate_drift`` on
  in-memory :class:`~ia_continu.cycle.DriftInputs` (champion = a
  :class:`~ia_continu.registry.ModelRef` with its validation accuracy and training batch
  ids), and on a retrain decision ``ia_continu.cycle.train_and_gate`` on an in-memory
  :class:`~ia_continu.cycle.TrainingWindow`; a passing gate makes the challenger the
  champion with the lineage ``record_challenger`` would register.

Optional extra policy (``--policies``): ``every_batch_latest`` retrains every batch on the
newest ``training_window_batches`` batches *including* ``t`` (no holdout), the strongest
"always retrain" baseline at the same training-set size.

The in-memory windows mirror ``load_drift_inputs`` / ``load_training_window``; only the
database and MLflow round trips are left out (``bench/cycle_wall_time.py`` times those).

Usage: ``.venv/bin/python -m bench.prequential [--batch-size 336] [...]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench._common import RESULTS_DIR, fmt, markdown_table, summarize_ms, write_json
from ia_continu import cycle, registry
from ia_continu.settings import PACKAGED_ELEC2, Settings
from ia_continu.sources import ReplaySource, Schema
from ia_continu.training import accuracy, split_holdout, train

POLICIES = ("never", "every_batch", "on_drift")
EXTRA_POLICIES = ("every_batch_latest",)
MODEL_NAME = "bench-prequential"


@dataclass(frozen=True)
class Stream:
    """The whole replayed stream in memory: one frame per batch, ``batch_id`` = position."""

    name: str
    schema: Schema
    batches: list[pd.DataFrame]


def load_stream(batch_size: int, path: Path = PACKAGED_ELEC2) -> Stream:
    """Elec2 as the default replay source yields it, batch by batch, one full pass."""
    source = ReplaySource(
        path=path,
        target="class",
        batch_size=batch_size,
        time_column="date",
        categorical=("day",),
        loop=False,
    )
    batches = [source.batch(p).assign(batch_id=p) for p in range(source.n_batches)]
    return Stream(source.name, source.schema, batches)


@dataclass
class Champion:
    """The serving model and its registry reference (what ``get_alias`` would return)."""

    ref: registry.ModelRef
    model: Any


@dataclass
class PolicyResult:
    """Outcome of one policy over the stream."""

    policy: str
    test_rows: int = 0
    correct: int = 0
    batch_accuracy: list[float] = field(default_factory=list)
    retrains: int = 0
    failed_trainings: int = 0
    promotions: int = 0
    retrain_batches: list[int] = field(default_factory=list)
    cycle_seconds: list[float] = field(default_factory=list)
    retrain_cycle_seconds: list[float] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    data_drift_cycles: int = 0
    concept_drift_cycles: int = 0

    @property
    def accuracy(self) -> float:
        """Prequential accuracy: correct predictions over all test rows (0..1)."""
        return self.correct / self.test_rows if self.test_rows else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "policy": self.policy,
            "prequential_accuracy": round(self.accuracy, 6),
            "test_rows": self.test_rows,
            "test_batches": len(self.batch_accuracy),
            "retrains": self.retrains,
            "failed_trainings": self.failed_trainings,
            "promotions": self.promotions,
            "cycle_ms": summarize_ms(self.cycle_seconds),
            "retrain_cycle_ms": summarize_ms(self.retrain_cycle_seconds),
            "data_drift_cycles": self.data_drift_cycles,
            "concept_drift_cycles": self.concept_drift_cycles,
            "decision_reasons": dict(self.reasons),
            "retrain_batches": self.retrain_batches,
            "batch_accuracy": [round(a, 4) for a in self.batch_accuracy],
        }


def _frame(stream: Stream, positions: Sequence[int]) -> pd.DataFrame:
    return pd.concat([stream.batches[p] for p in positions], ignore_index=True)


def training_window(
    stream: Stream, t: int, settings: Settings, champion: Champion | None
) -> cycle.TrainingWindow:
    """``cycle.load_training_window`` at batch ``t``, from memory instead of the database."""
    first = max(0, t - settings.training_window_batches)
    frame = _frame(stream, range(first, t + 1))
    train_rows, holdout = split_holdout(frame)
    return cycle.TrainingWindow(
        source=stream.name,
        schema=stream.schema,
        train=train_rows,
        holdout=holdout,
        training_batch_ids=sorted(int(b) for b in train_rows["batch_id"].unique()),
        holdout_batch_id=int(holdout["batch_id"].iloc[-1]),
        champion=champion.ref if champion else None,
        champion_model=champion.model if champion else None,
    )


def drift_inputs(
    stream: Stream, t: int, settings: Settings, champion: Champion | None
) -> cycle.DriftInputs:
    """``cycle.load_drift_inputs`` at batch ``t``, from memory instead of the database."""
    ids = list(range(max(0, t - settings.current_window_batches + 1), t + 1))
    current = _frame(stream, ids)
    newest = current[current["batch_id"] == ids[-1]]
    reference = None
    if champion is not None and champion.ref.training_batch_ids:
        reference = _frame(stream, champion.ref.training_batch_ids)
    return cycle.DriftInputs(
        stream.name,
        stream.schema,
        ids,
        current,
        newest,
        champion.ref if champion else None,
        reference,
        champion.model if champion else None,
    )


def record(
    window: cycle.TrainingWindow,
    challenger: Any,
    decision: dict[str, Any],
    champion: Champion | None,
) -> Champion | None:
    """What ``cycle.record_challenger`` leaves behind the ``champion`` alias.

    A promoted challenger gets the next version, ``validation_accuracy`` = its holdout
    accuracy (stored as a 6-decimal tag, as the registry does) and the window's training
    batch ids; otherwise the champion is unchanged.
    """
    if not decision["promote"]:
        return champion
    ref = registry.ModelRef(
        name=MODEL_NAME,
        version=champion.ref.version + 1 if champion else 1,
        run_id=None,
        validation_accuracy=float(f"{decision['challenger_accuracy']:.6f}"),
        training_batch_ids=window.training_batch_ids,
        source=window.source,
    )
    return Champion(ref, challenger)


def bootstrap(stream: Stream, settings: Settings) -> Champion:
    """The flows' first cycle: no champion, so train on batch 0 (last quarter held out)."""
    window = training_window(stream, 0, settings, None)
    challenger, decision = cycle.train_and_gate(window, settings)
    champion = record(window, challenger, decision, None)
    assert champion is not None  # the gate always promotes without a champion
    return champion


Step = Callable[[Stream, int, Settings, Champion, PolicyResult], Champion]


def step_never(_s: Stream, _t: int, _c: Settings, champion: Champion, _r: PolicyResult) -> Champion:
    """Keep the bootstrap model."""
    return champion


def _challenge(
    stream: Stream, t: int, settings: Settings, champion: Champion, result: PolicyResult
) -> tuple[cycle.TrainingWindow, Any, dict[str, Any]] | None:
    """``cycle.train_and_gate`` on the flows' window ending at ``t``, counted as a retrain.

    None when no challenger could be trained (a single-class window): the flows then
    keep the champion, and the benchmark counts a failed training.
    """
    window = training_window(stream, t, settings, champion)
    result.retrains += 1
    challenger, decision = cycle.train_and_gate(window, settings)
    if challenger is None:
        result.failed_trainings += 1
        return None
    return window, challenger, decision


def step_every_batch(
    stream: Stream, t: int, settings: Settings, champion: Champion, result: PolicyResult
) -> Champion:
    """Train on the flows' window ending at ``t`` and promote unconditionally."""
    challenge = _challenge(stream, t, settings, champion, result)
    if challenge is None:
        return champion
    window, challenger, decision = challenge
    result.promotions += 1
    promoted = record(window, challenger, {**decision, "promote": True}, champion)
    assert promoted is not None
    return promoted


def step_every_batch_latest(
    stream: Stream, t: int, settings: Settings, champion: Champion, result: PolicyResult
) -> Champion:
    """Train on the newest ``training_window_batches`` batches including ``t``; promote."""
    ids = list(range(max(0, t - settings.training_window_batches + 1), t + 1))
    frame = _frame(stream, ids)
    result.retrains += 1
    try:
        model = train(frame, stream.schema, settings.estimator, settings.estimator_params)
    except ValueError:  # a single-class window
        result.failed_trainings += 1
        return champion
    result.promotions += 1
    ref = registry.ModelRef(MODEL_NAME, champion.ref.version + 1, None, None, ids, stream.name)
    return Champion(ref, model)


def step_on_drift(
    stream: Stream, t: int, settings: Settings, champion: Champion, result: PolicyResult
) -> Champion:
    """The real cycle: ``evaluate_drift``; on a retrain decision ``train_and_gate``."""
    report = cycle.evaluate_drift(drift_inputs(stream, t, settings, champion), settings)
    result.reasons[report["decision"]["reason"]] += 1
    result.data_drift_cycles += bool(report["data_drift"] and report["data_drift"]["drift"])
    result.concept_drift_cycles += bool(report["performance"] and report["performance"]["drift"])
    if not report["decision"]["retrain"]:
        return champion
    challenge = _challenge(stream, t, settings, champion, result)
    if challenge is None:
        return champion
    window, challenger, decision = challenge
    result.promotions += bool(decision["promote"])
    new = record(window, challenger, decision, champion)
    assert new is not None
    return new


STEPS: dict[str, Step] = {
    "never": step_never,
    "every_batch": step_every_batch,
    "every_batch_latest": step_every_batch_latest,
    "on_drift": step_on_drift,
}


def run_policy(policy: str, stream: Stream, settings: Settings) -> PolicyResult:
    """Bootstrap on batch 0, then test-then-train over batches 1..end.

    The timed part of a cycle is the policy's update (drift evaluation, decision,
    window assembly, training, gate), not the prequential test prediction.
    """
    step = STEPS[policy]
    result = PolicyResult(policy)
    champion = bootstrap(stream, settings)
    for t in range(1, len(stream.batches)):
        batch = stream.batches[t]
        acc = accuracy(champion.model, batch, stream.schema)
        result.batch_accuracy.append(acc)
        result.correct += round(acc * len(batch))
        result.test_rows += len(batch)
        before = result.retrains
        start = time.perf_counter()
        champion = step(stream, t, settings, champion, result)
        elapsed = time.perf_counter() - start
        result.cycle_seconds.append(elapsed)
        if result.retrains > before:
            result.retrain_cycle_seconds.append(elapsed)
            result.retrain_batches.append(t)
    return result


def target_check(results: dict[str, PolicyResult]) -> dict[str, Any] | None:
    """The issue's target: on_drift within 1 point of every_batch with <= 1/3 its retrains."""
    if "on_drift" not in results or "every_batch" not in results:
        return None
    ours, every = results["on_drift"], results["every_batch"]
    gap = (every.accuracy - ours.accuracy) * 100
    ratio = ours.retrains / every.retrains if every.retrains else float("nan")
    return {
        "accuracy_gap_points": round(gap, 3),
        "retrain_ratio": round(ratio, 4),
        "accuracy_ok": gap <= 1.0,
        "retrains_ok": ratio <= 1 / 3,
        "met": gap <= 1.0 and ratio <= 1 / 3,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; every default is the corresponding ``Settings()`` default."""
    d = Settings()
    parser = argparse.ArgumentParser(prog="python -m bench.prequential", description=__doc__)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--training-window-batches", type=int, default=d.training_window_batches)
    parser.add_argument("--current-window-batches", type=int, default=d.current_window_batches)
    parser.add_argument("--accuracy-tolerance", type=float, default=d.accuracy_tolerance)
    parser.add_argument("--accuracy-floor", type=float, default=d.accuracy_floor)
    parser.add_argument("--promotion-margin", type=float, default=d.promotion_margin)
    parser.add_argument(
        "--retrain-on-data-drift",
        action=argparse.BooleanOptionalAction,
        default=d.retrain_on_data_drift,
    )
    parser.add_argument("--estimator", default=d.estimator)
    parser.add_argument(
        "--policies",
        default=",".join(POLICIES),
        help=f"comma-separated, among {', '.join(POLICIES + EXTRA_POLICIES)}",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "prequential.json")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """``Settings`` with the benchmark's flags applied (validated like the env vars)."""
    return Settings(
        batch_size=args.batch_size,
        training_window_batches=args.training_window_batches,
        current_window_batches=args.current_window_batches,
        accuracy_tolerance=args.accuracy_tolerance,
        accuracy_floor=args.accuracy_floor,
        promotion_margin=args.promotion_margin,
        retrain_on_data_drift=args.retrain_on_data_drift,
        estimator=args.estimator,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the policies, print a markdown table, write the JSON results."""
    args = parse_args(argv)
    settings = settings_from(args)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in STEPS]
    if unknown:
        print(f"unknown policies {unknown}; choose among {list(STEPS)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    stream = load_stream(settings.batch_size)
    results = {p: run_policy(p, stream, settings) for p in policies}
    total = time.perf_counter() - started

    rows = []
    for r in results.values():
        cycle_ms = summarize_ms(r.cycle_seconds)
        retrain_ms = summarize_ms(r.retrain_cycle_seconds)
        rows.append(
            [
                r.policy,
                f"{r.accuracy * 100:.2f}",
                r.retrains,
                r.failed_trainings,
                r.promotions,
                fmt(cycle_ms["median_ms"], 2),
                fmt(cycle_ms["p95_ms"], 2),
                fmt(retrain_ms["median_ms"], 2),
            ]
        )
    knobs = (
        f"batch_size={settings.batch_size}, training_window_batches="
        f"{settings.training_window_batches}, accuracy_tolerance={settings.accuracy_tolerance}, "
        f"accuracy_floor={settings.accuracy_floor}, promotion_margin={settings.promotion_margin}, "
        f"retrain_on_data_drift={settings.retrain_on_data_drift}, estimator={settings.estimator}"
    )
    print(
        f"Elec2 prequential, {len(stream.batches)} batches ({len(stream.batches) - 1} tested); "
        f"{knobs}\n"
    )
    print(
        markdown_table(
            [
                "policy",
                "prequential acc (%)",
                "retrains",
                "failed",
                "promotions",
                "cycle median (ms)",
                "cycle p95 (ms)",
                "retrain cycle median (ms)",
            ],
            rows,
        )
    )
    check = target_check(results)
    if check is not None:
        verdict = "MET" if check["met"] else "NOT met"
        print(
            f"\nTarget (on_drift within 1 point of every_batch, <= 1/3 of its retrains): "
            f"{verdict} — gap {check['accuracy_gap_points']:+.2f} points, "
            f"retrain ratio {check['retrain_ratio']:.3f}"
        )
    payload = {
        "benchmark": "prequential",
        "stream": stream.name,
        "n_batches": len(stream.batches),
        "settings": {
            "batch_size": settings.batch_size,
            "training_window_batches": settings.training_window_batches,
            "current_window_batches": settings.current_window_batches,
            "accuracy_tolerance": settings.accuracy_tolerance,
            "accuracy_floor": settings.accuracy_floor,
            "promotion_margin": settings.promotion_margin,
            "retrain_on_data_drift": settings.retrain_on_data_drift,
            "estimator": settings.estimator,
            "drift_alpha": settings.drift_alpha,
            "drift_min_wasserstein": settings.drift_min_wasserstein,
            "drift_min_psi": settings.drift_min_psi,
        },
        "target": check,
        "policies": {p: r.to_dict() for p, r in results.items()},
        "total_seconds": round(total, 2),
    }
    out = write_json(args.output, payload)
    print(f"\nwrote {out} ({total:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
