"""The drift-policy benchmark: every stream of the suite, every policy, one protocol.

For each stream of ``bench.stream_suite.SUITE`` (real CSVs from ``../shared/datasets/``
and generated streams with known drift points), replayed through the same ``IAC_REPLAY_*``
settings a user sets, prequential (test-then-train): batch 0 trains, then each batch is
predicted whole by the model in place before the policy may learn it. Policies:

* ``never``, ``every_batch``, ``ours``: the project's cycle code (``bench/policies.py``);
* ``majority_previous``, ``last_batch``: the baselines (majority class of the previous
  batch; the project's estimator trained on the previous batch alone);
* ``arf``: river's Adaptive Random Forest (Gomes et al. 2017) under the same protocol.

Reported per stream: prequential, balanced and (multi-class) macro-F1 accuracy, retrains
and promotions; for known drifts, the batches to the concept-drift flag and to the
promotion and the accuracy before / after / at recovery; concept- and data-drift alarms
per 100 cycles; the issue's targets, each marked met or missed; a plot per stream in
``bench/results/streams-<name>.png``; everything in ``bench/results/streams.json`` and
the tables in ``bench/results/streams.md``.

Usage: ``python -m bench.streams [--streams elec2,weather] [--set KEY=VALUE ...]
[--policies ...] [--quick]``; ``--set`` takes ``Settings`` fields (``concept_drift_alpha=
0.05``), applied to every stream, so defaults are never tuned per stream.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import baselines, policies
from bench._common import RESULTS_DIR, markdown_table, write_json
from bench.stream_report import (
    PolicyTrace,
    alarm_rates,
    drift_response,
    markdown_rows,
    plot_stream,
)
from bench.stream_suite import QUICK, QUICK_MAX_BATCHES, SUITE, Stream, load_stream, settings_for
from ia_continu.settings import Settings

POLICIES = ("never", "every_batch", "ours", "majority_previous", "last_batch", "arf")
BASELINES = ("majority_previous", "last_batch")
CONTINUOUS = ("souza_2cdt", "souza_2cht")  # drift that never stops: no retrain-count target
ELEC2_ABSOLUTE_TARGET = 0.785


def run(policy: str, stream: Stream, settings: Settings, arf_seed: int = 0) -> PolicyTrace:
    """One policy over one stream."""
    if policy in policies.STEPS:
        return policies.run_policy(policy, stream.name, stream.schema, stream.batches, settings)
    if policy == "majority_previous":
        return baselines.majority_previous(stream)
    if policy == "last_batch":
        return baselines.last_batch(stream, settings)
    if policy == "arf":
        return baselines.arf(stream, seed=arf_seed)
    raise ValueError(f"unknown policy {policy!r}; one of {POLICIES}")


def targets(
    name: str,
    traces: dict[str, PolicyTrace],
    responses: list[dict[str, Any]],
    alarms: dict[str, Any],
    stable: bool,
) -> dict[str, Any]:
    """The issue's targets for one stream: each ``{"met": bool | None, ...}``."""
    out: dict[str, Any] = {}
    ours = traces.get("ours")
    if ours is None:
        return out
    present = [b for b in BASELINES if b in traces]
    if present:
        best = max(present, key=lambda b: traces[b].accuracy)
        out["ours_ge_best_baseline"] = {
            "met": ours.accuracy >= traces[best].accuracy,
            "best_baseline": best,
            "gap_points": round((ours.accuracy - traces[best].accuracy) * 100, 2),
        }
    if "never" in traces:
        out["ours_ge_never"] = {
            "met": ours.accuracy >= traces["never"].accuracy,
            "gap_points": round((ours.accuracy - traces["never"].accuracy) * 100, 2),
        }
    if "every_batch" in traces:
        every = traces["every_batch"]
        gap = (every.accuracy - ours.accuracy) * 100
        out["ours_within_1_point_of_every_batch"] = {
            "met": gap <= 1.0,
            "gap_points": round(-gap, 2),
        }
        if name not in CONTINUOUS:
            ratio = ours.retrains / every.retrains if every.retrains else 0.0
            out["ours_at_most_a_third_of_retrains"] = {
                "met": ratio <= 1 / 3,
                "ratio": round(ratio, 3),
            }
    if name == "elec2":
        out["elec2_at_least_78_5"] = {
            "met": ours.accuracy >= ELEC2_ABSOLUTE_TARGET,
            "accuracy": round(ours.accuracy * 100, 2),
        }
        if "arf" in traces:
            out["elec2_beats_arf"] = {
                "met": ours.accuracy > traces["arf"].accuracy,
                "gap_points": round((ours.accuracy - traces["arf"].accuracy) * 100, 2),
            }
    if responses:
        out["abrupt_drifts_flagged_within_2"] = {
            "met": all(r["flagged_in_time"] for r in responses),
            "delays": [r["flag_delay"] for r in responses],
        }
        out["abrupt_drifts_recovered_within_2_points"] = {
            "met": all(r["recovered"] for r in responses),
            "recovery_minus_pre_points": [
                None
                if r["recovery_accuracy"] is None or r["pre_accuracy"] is None
                else round((r["recovery_accuracy"] - r["pre_accuracy"]) * 100, 2)
                for r in responses
            ],
        }
    if stable:
        concept, data = alarms.get("concept_drift_per_100"), alarms.get("data_drift_per_100")
        out["stable_concept_alarms_le_1_per_100"] = {
            "met": concept is not None and concept <= 1.0,
            "per_100": concept,
        }
        out["stable_data_alarms_le_5_per_100"] = {
            "met": data is not None and data <= 5.0,
            "per_100": data,
        }
    return out


def bench_stream(
    name: str,
    chosen: Sequence[str],
    overrides: dict[str, Any],
    *,
    datasets_dir: Path | None,
    generated_dir: Path | None,
    max_batches: int | None = None,
    plot: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``chosen`` policies on stream ``name``; the JSON-ready result."""
    spec = SUITE[name]
    stream = load_stream(spec, datasets_dir, generated_dir, max_batches)
    settings = settings_for(stream.spec, **overrides)
    traces: dict[str, PolicyTrace] = {}
    for policy in chosen:
        started = time.perf_counter()
        traces[policy] = run(policy, stream, settings)
        if traces[policy].seconds is None:
            traces[policy].seconds = time.perf_counter() - started
        t = traces[policy]
        log(
            f"  {name:20s} {policy:18s} acc {t.accuracy * 100:6.2f}  retrains {t.retrains:4d}"
            f"  ({t.seconds:.1f} s)"
        )
    drifts = list(stream.spec.drift_batches)
    responses = drift_response(traces["ours"], drifts) if "ours" in traces and drifts else []
    alarms = alarm_rates(traces["ours"]) if "ours" in traces else {}
    stable = stream.spec.kind == "stable"
    result = {
        "stream": name,
        "source": stream.name,
        "kind": stream.spec.kind,
        "batches": len(stream.batches),
        "batch_size": stream.spec.batch_size,
        "rows": sum(len(b) for b in stream.batches),
        "drift_batches": drifts,
        "policies": {p: t.to_dict() for p, t in traces.items()},
        "drift_response": responses,
        "alarms": alarms,
        "targets": targets(name, traces, responses, alarms, stable),
    }
    if plot:
        written = plot_stream(name, list(traces.values()), drifts)
        result["plot"] = written.name
    result["_traces"] = traces
    return result


def report(results: list[dict[str, Any]]) -> str:
    """Markdown: one table per stream, drift responses, and the targets."""
    lines: list[str] = []
    for r in results:
        traces = r["_traces"]
        header, rows = markdown_rows(list(traces.values()))
        lines.append(
            f"### {r['stream']} ({r['kind']}, {r['batches']} batches of {r['batch_size']})\n"
        )
        lines.append(markdown_table(header, rows))
        if r["drift_response"]:
            lines.append("")
            lines.append(
                markdown_table(
                    [
                        "drift at batch",
                        "flagged after",
                        "promoted after",
                        "acc 5 before (%)",
                        "acc 5 after (%)",
                        "acc 5 after promotion (%)",
                    ],
                    [
                        [
                            d["drift_batch"],
                            "never" if d["flag_delay"] is None else d["flag_delay"],
                            "never" if d["promotion_delay"] is None else d["promotion_delay"],
                            _pct(d["pre_accuracy"]),
                            _pct(d["post_accuracy"]),
                            _pct(d["recovery_accuracy"]),
                        ]
                        for d in r["drift_response"]
                    ],
                )
            )
        a = r["alarms"]
        if a:
            lines.append(
                f"\nours: concept-drift flags {a['concept_drift_alarms']}/{a['concept_drift_cycles']} cycles "
                f"({a['concept_drift_per_100']} per 100), data-drift flags {a['data_drift_alarms']}/"
                f"{a['data_drift_cycles']} ({a['data_drift_per_100']} per 100)"
            )
        met = [f"{k}: {'met' if v['met'] else 'MISSED'}" for k, v in r["targets"].items()]
        if met:
            lines.append("\nTargets: " + "; ".join(met))
        lines.append("")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}"


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as Settings overrides (validated by Settings itself).

    Raises:
        SystemExit: a pair without ``=`` or a value Settings rejects (exit 2, one line).
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip().lower().removeprefix("iac_")] = value
    try:
        Settings(**out)
    except Exception as exc:  # pydantic ValidationError: name the key, not a traceback
        raise SystemExit(f"--set: {exc}".splitlines()[0] + f" ({', '.join(out)})") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables; write JSON, markdown and plots."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.streams", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--streams", default=",".join(SUITE), help=f"comma list among {', '.join(SUITE)}"
    )
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Settings field for every stream",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK} cut to {QUICK_MAX_BATCHES} batches (smoke test)",
    )
    parser.add_argument("--datasets-dir", type=Path, default=None)
    parser.add_argument("--generated-dir", type=Path, default=None)
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "streams.json")
    args = parser.parse_args(argv)
    names = [QUICK] if args.quick else [s.strip() for s in args.streams.split(",") if s.strip()]
    chosen = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [n for n in names if n not in SUITE] + [p for p in chosen if p not in POLICIES]
    if unknown:
        print(f"unknown streams or policies: {unknown}", file=sys.stderr)
        return 2
    overrides = parse_overrides(args.set)
    warnings.filterwarnings("ignore", category=UserWarning)
    started = time.perf_counter()
    results = []
    for name in names:
        try:
            results.append(
                bench_stream(
                    name,
                    chosen,
                    overrides,
                    datasets_dir=args.datasets_dir,
                    generated_dir=args.generated_dir,
                    max_batches=QUICK_MAX_BATCHES if args.quick else None,
                    plot=not args.no_plots,
                )
            )
        except FileNotFoundError as exc:
            print(f"{name}: skipped: {exc}", file=sys.stderr)
    total = time.perf_counter() - started
    text = report(results)
    print("\n" + text)
    missed = [
        f"{r['stream']}.{k}" for r in results for k, v in r["targets"].items() if not v["met"]
    ]
    print(f"targets missed: {missed or 'none'}  ({total:.0f} s)")
    defaults = Settings(**overrides)
    payload = {
        "benchmark": "streams",
        "settings": {
            key: getattr(defaults, key)
            for key in (
                "estimator",
                "concept_drift_alpha",
                "concept_drift_min_effect",
                "concept_drift_reference_batches",
                "training_window_batches",
                "training_window_one_se",
                "training_min_change_rows",
                "refit_on_holdout",
                "promotion_alpha",
                "promotion_margin",
                "promotion_min_lift_over_baseline",
                "drift_alpha",
                "drift_min_wasserstein",
                "drift_min_psi",
                "retrain_on_data_drift",
            )
        },
        "overrides": overrides,
        "streams": [{k: v for k, v in r.items() if k != "_traces"} for r in results],
        "targets_missed": missed,
        "total_seconds": round(total, 1),
    }
    out = write_json(args.output, payload)
    args.output.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {out} and {args.output.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
