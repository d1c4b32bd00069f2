"""Drift report speed and detection: IA Continu's ``detect_data_drift`` vs Evidently.

Data: 23 columns, 20 numeric ``num_0..num_19`` ~ N(0, 1) and 3 categorical
``cat_0..cat_2`` uniform over 5 levels; reference and current windows of ``n`` rows each.
In the *shifted* current window ``num_0..num_4`` are shifted by 0.1, 0.15, 0.2, 0.3 and
0.5 standard deviations and ``cat_0`` has shares (0.3, 0.25, 0.2, 0.15, 0.1) instead of
0.2 each; every other column keeps its reference distribution. The *null* current window
is unshifted.

Runs: for each seed, a shifted pair and a null pair; both tools see the same frames and
alternate which goes first. Every run is timed, wall clock and process CPU (the CPU time
is the robust number on a shared machine), after one warm-up run per tool; speed is the
median over those runs. Ours is ``detect_data_drift(...)`` + ``.to_dict()`` with the
``Settings()`` drift defaults; Evidently is ``Dataset.from_pandas`` (both windows) +
``Report([DataDriftPreset()]).run(current, reference)`` + ``.dict()``.

Detection, over seeds: a column counts as flagged when the tool says it drifted (ours:
``FeatureDrift.drifted``; Evidently: the ``ValueDrift`` metric's value against its
threshold, read from the snapshot's ``.dict()``: p-value methods flag when the p-value is
below the threshold, distance methods when the distance reaches it, as Evidently's own
per-column tests do). Dataset level: ours ``DataDriftReport.drift``; Evidently
``DriftedColumnsCount.share >= drift_share`` (0.5 in the preset).

Usage: ``.venv/bin/python -m bench.drift_speed [--sizes 10000,100000] [--seeds 20,2]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._common import RESULTS_DIR, markdown_table, write_json
from ia_continu.monitoring.data_drift import detect_data_drift
from ia_continu.settings import Settings

N_NUMERIC = 20
N_CATEGORICAL = 3
LEVELS = ("a", "b", "c", "d", "e")
NUMERIC = tuple(f"num_{i}" for i in range(N_NUMERIC))
CATEGORICAL = tuple(f"cat_{i}" for i in range(N_CATEGORICAL))
SHIFTS = {"num_0": 0.1, "num_1": 0.15, "num_2": 0.2, "num_3": 0.3, "num_4": 0.5}
SHIFTED_CATEGORICAL = "cat_0"
REFERENCE_SHARES = (0.2, 0.2, 0.2, 0.2, 0.2)
SHIFTED_SHARES = (0.3, 0.25, 0.2, 0.15, 0.1)
DRIFTED_COLUMNS = (*SHIFTS, SHIFTED_CATEGORICAL)
WARMUP_SEED = 999_999  # not among the measured seeds


def make_window(n: int, rng: np.random.Generator, shifted: bool) -> pd.DataFrame:
    """``n`` rows x 23 columns; ``shifted`` applies SHIFTS and SHIFTED_SHARES."""
    data: dict[str, Any] = {}
    for name in NUMERIC:
        data[name] = rng.standard_normal(n) + (SHIFTS.get(name, 0.0) if shifted else 0.0)
    for name in CATEGORICAL:
        shares = SHIFTED_SHARES if shifted and name == SHIFTED_CATEGORICAL else REFERENCE_SHARES
        data[name] = rng.choice(np.array(LEVELS), size=n, p=np.array(shares))
    return pd.DataFrame(data)


def make_pair(n: int, seed: int, shifted: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, current), independent draws from ``default_rng([seed, n, shifted])``."""
    rng = np.random.default_rng([seed, n, int(shifted)])
    return make_window(n, rng, False), make_window(n, rng, shifted)


@dataclass(frozen=True)
class Verdict:
    """What one tool said about one (reference, current) pair."""

    flagged: frozenset[str]
    dataset_drift: bool


def run_ours(reference: pd.DataFrame, current: pd.DataFrame, settings: Settings) -> Verdict:
    """``detect_data_drift`` with the settings' drift knobs, result extracted to a dict."""
    report = detect_data_drift(
        reference,
        current,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        alpha=settings.drift_alpha,
        min_wasserstein=settings.drift_min_wasserstein,
        min_psi=settings.drift_min_psi,
        min_features=settings.drift_min_features,
    )
    out = report.to_dict()
    flagged = frozenset(f["feature"] for f in out["features"] if f["drifted"])
    return Verdict(flagged, bool(out["drift"]))


def evidently_verdict(snapshot: dict[str, Any]) -> Verdict:
    """Per-column and dataset verdicts from an Evidently ``Snapshot.dict()``.

    ``ValueDrift`` metrics carry the drift score as ``value`` and the resolved
    ``method`` / ``threshold`` in ``config``; ``DriftedColumnsCount`` carries the share
    of drifted columns and the preset's ``drift_share``.
    """
    flagged: set[str] = set()
    dataset_drift = False
    for metric in snapshot["metrics"]:
        config = metric["config"]
        kind = str(config.get("type", ""))
        if kind.endswith(":ValueDrift"):
            value, threshold = float(metric["value"]), float(config["threshold"])
            is_p_value = "p_value" in str(config.get("method", ""))
            if (value < threshold) if is_p_value else (value >= threshold):
                flagged.add(str(config["column"]))
        elif kind.endswith(":DriftedColumnsCount"):
            dataset_drift = float(metric["value"]["share"]) >= float(config["drift_share"])
    return Verdict(frozenset(flagged), dataset_drift)


def run_evidently(reference: pd.DataFrame, current: pd.DataFrame) -> Verdict:
    """``Report([DataDriftPreset()]).run(current, reference).dict()``, verdicts read back."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=list(NUMERIC), categorical_columns=list(CATEGORICAL)
    )
    ref = Dataset.from_pandas(reference, data_definition=definition)
    cur = Dataset.from_pandas(current, data_definition=definition)
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    return evidently_verdict(snapshot.dict())


Tool = Callable[[pd.DataFrame, pd.DataFrame], Verdict]


@dataclass
class Tally:
    """Timings and verdict counts of one tool at one size."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    null_hits: Counter[str] = field(default_factory=Counter)
    dataset_shifted: int = 0
    dataset_null: int = 0

    def add(
        self, tool: Tool, reference: pd.DataFrame, current: pd.DataFrame, shifted: bool
    ) -> None:
        """Run ``tool`` once, timed (wall and process CPU), and count its verdicts."""
        wall, cpu = time.perf_counter(), time.process_time()
        verdict = tool(reference, current)
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)
        (self.hits if shifted else self.null_hits).update(verdict.flagged)
        if shifted:
            self.dataset_shifted += verdict.dataset_drift
        else:
            self.dataset_null += verdict.dataset_drift

    def summary(self, seeds: int) -> dict[str, Any]:
        """JSON-ready: timings (ms) and rates over ``seeds`` shifted + ``seeds`` null pairs."""
        columns = (*NUMERIC, *CATEGORICAL)
        unshifted = [c for c in columns if c not in DRIFTED_COLUMNS]
        false_alarms = sum(self.hits[c] for c in unshifted) + sum(self.null_hits.values())
        trials = seeds * (len(unshifted) + len(columns))
        return {
            "wall_ms": _ms(self.wall),
            "cpu_ms": _ms(self.cpu),
            "detection_rate": {c: self.hits[c] / seeds for c in DRIFTED_COLUMNS},
            "detection_rate_mean": sum(self.hits[c] for c in DRIFTED_COLUMNS)
            / (seeds * len(DRIFTED_COLUMNS)),
            "false_alarm_rate_per_feature": false_alarms / trials,
            "false_alarms": false_alarms,
            "false_alarm_trials": trials,
            "dataset_drift_rate_shifted": self.dataset_shifted / seeds,
            "dataset_drift_rate_null": self.dataset_null / seeds,
        }


def _ms(seconds: Sequence[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(seconds) * 1000, 2),
        "min": round(min(seconds) * 1000, 2),
        "max": round(max(seconds) * 1000, 2),
        "n": len(seconds),
    }


def measure(n: int, seeds: int, tools: dict[str, Tool]) -> dict[str, Any]:
    """One warm-up run per tool, then each tool on ``seeds`` shifted and null pairs.

    Every run is timed; speeds are medians over those ``2 * seeds`` runs per tool. The
    tools alternate (which one goes first flips with each pair) and see the same frames.
    """
    reference, current = make_pair(n, seed=WARMUP_SEED, shifted=True)
    for tool in tools.values():
        tool(reference, current)
    tallies = {name: Tally() for name in tools}
    order = list(tools)
    for seed in range(seeds):
        for shifted in (True, False):
            reference, current = make_pair(n, seed, shifted)
            for name in order:
                tallies[name].add(tools[name], reference, current, shifted)
            order.reverse()
    out: dict[str, Any] = {"rows": n, "columns": len(NUMERIC) + len(CATEGORICAL), "seeds": seeds}
    out.update({name: t.summary(seeds) for name, t in tallies.items()})
    if "ours" in tallies and "evidently" in tallies:
        for clock in ("wall", "cpu"):
            out[f"evidently_over_ours_{clock}"] = round(
                out["evidently"][f"{clock}_ms"]["median"] / out["ours"][f"{clock}_ms"]["median"],
                2,
            )
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(prog="python -m bench.drift_speed", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="rows per window, comma list")
    parser.add_argument(
        "--seeds", default="20,2", help="seeds per size (each: a shifted and a null pair)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "drift_speed.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Time both tools, measure their detection rates, print tables, write JSON."""
    args = parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    if len(seeds) == 1:
        seeds *= len(sizes)
    if len(seeds) != len(sizes) or min(seeds) < 1:
        raise SystemExit(f"--seeds: give 1 or {len(sizes)} positive values, got {args.seeds!r}")
    settings = Settings()
    tools: dict[str, Tool] = {
        "ours": lambda ref, cur: run_ours(ref, cur, settings),
        "evidently": run_evidently,
    }
    started = time.perf_counter()
    results = []
    for n, s in zip(sizes, seeds, strict=True):
        results.append(measure(n, s, tools))
        print(f"{n:,} rows: done after {time.perf_counter() - started:.0f} s", flush=True)
    total = time.perf_counter() - started

    print("\nOne drift report, 23 columns: median over the timed runs (after one warm-up)\n")
    print(
        markdown_table(
            [
                "rows per window",
                "timed runs",
                "ours wall (ms)",
                "Evidently wall (ms)",
                "ratio (wall)",
                "ours CPU (ms)",
                "Evidently CPU (ms)",
                "ratio (CPU)",
            ],
            [
                [
                    f"{r['rows']:,}",
                    r["ours"]["wall_ms"]["n"],
                    f"{r['ours']['wall_ms']['median']:.0f}",
                    f"{r['evidently']['wall_ms']['median']:.0f}",
                    f"{r['evidently_over_ours_wall']:.1f}x",
                    f"{r['ours']['cpu_ms']['median']:.0f}",
                    f"{r['evidently']['cpu_ms']['median']:.0f}",
                    f"{r['evidently_over_ours_cpu']:.1f}x",
                ]
                for r in results
            ],
        )
    )
    print(
        "\nDetection rate per shifted feature, false-alarm rate per unshifted feature, "
        "dataset-level verdict rates\n"
    )
    header = ["rows", "seeds", "tool", *(f"{c} +{SHIFTS[c]} std" for c in SHIFTS)]
    header += [f"{SHIFTED_CATEGORICAL} shares", "false alarms / feature",
               "dataset drift (shifted)", "dataset drift (null)"]  # fmt: skip
    rows = []
    for r in results:
        for name in tools:
            t = r[name]
            rows.append(
                [
                    f"{r['rows']:,}",
                    r["seeds"],
                    name,
                    *(f"{t['detection_rate'][c]:.2f}" for c in DRIFTED_COLUMNS),
                    f"{t['false_alarm_rate_per_feature']:.3f} "
                    f"({t['false_alarms']}/{t['false_alarm_trials']})",
                    f"{t['dataset_drift_rate_shifted']:.2f}",
                    f"{t['dataset_drift_rate_null']:.2f}",
                ]
            )
    print(markdown_table(header, rows))
    payload = {
        "benchmark": "drift_speed",
        "columns": {"numeric": list(NUMERIC), "categorical": list(CATEGORICAL)},
        "shifts_std": SHIFTS,
        "shifted_categorical": {
            "column": SHIFTED_CATEGORICAL,
            "reference_shares": REFERENCE_SHARES,
            "current_shares": SHIFTED_SHARES,
        },
        "ours_settings": {
            "drift_alpha": settings.drift_alpha,
            "drift_min_wasserstein": settings.drift_min_wasserstein,
            "drift_min_psi": settings.drift_min_psi,
            "drift_min_features": settings.drift_min_features,
        },
        "evidently": {"preset": "DataDriftPreset()", "version": _evidently_version()},
        "results": results,
        "total_seconds": round(total, 1),
    }
    out = write_json(args.output, payload)
    print(f"\nwrote {out} ({total:.0f} s)")
    return 0


def _evidently_version() -> str:
    from importlib.metadata import version

    return version("evidently")


if __name__ == "__main__":
    raise SystemExit(main())
