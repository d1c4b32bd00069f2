"""Drift report speed and detection: IA Continu's ``detect_data_drift`` vs Evidently.

Data: 23 columns, 20 numeric ``num_0..num_19`` ~ N(0, 1) and 3 categorical
``cat_0..cat_2`` uniform over 5 levels; reference and current windows of ``n`` rows each.
In the *shifted* current window ``num_0..num_4`` are shifted by 0.1, 0.15, 0.2, 0.3 and
0.5 standard deviations and ``cat_0`` has shares (0.3, 0.25, 0.2, 0.15, 0.1) instead of
0.2 each; every other column keeps its reference distribution. The *null* current window
is unshifted.

Speed: one report per tool on the same shifted pair, one warm-up run each, then the
median of ``--repeats`` runs (the two tools alternate). Ours is
``detect_data_drift(...)`` + ``.to_dict()`` with the ``Settings()`` drift defaults;
Evidently is ``Dataset.from_pandas`` (both windows) + ``Report([DataDriftPreset()]).run``
+ ``.dict()``.

Detection, over seeds: a column counts as flagged when the tool says it drifted (ours:
``FeatureDrift.drifted``; Evidently: the ``ValueDrift`` metric's value against its
threshold, read from the snapshot's ``.dict()``: p-value methods flag when the p-value is
below the threshold, distance methods when the distance reaches it, as Evidently's own
per-column tests do). Dataset level: ours ``DataDriftReport.drift``; Evidently
``DriftedColumnsCount.share >= drift_share`` (0.5 in the preset).

Usage: ``.venv/bin/python -m bench.drift_speed [--sizes 10000,100000] [--seeds 20,5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._common import RESULTS_DIR, markdown_table, write_json
from ia_continu.drift import detect_data_drift
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


def timed(tool: Tool, reference: pd.DataFrame, current: pd.DataFrame) -> float:
    """Wall time of one call, in seconds."""
    start = time.perf_counter()
    tool(reference, current)
    return time.perf_counter() - start


def speed(n: int, repeats: int, tools: dict[str, Tool]) -> dict[str, Any]:
    """One warm-up run per tool, then ``repeats`` alternating timed runs; medians in ms."""
    reference, current = make_pair(n, seed=0, shifted=True)
    for tool in tools.values():
        tool(reference, current)
    times: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(repeats):
        for name, tool in tools.items():
            times[name].append(timed(tool, reference, current))
    out: dict[str, Any] = {"rows": n, "columns": N_NUMERIC + N_CATEGORICAL, "repeats": repeats}
    for name, values in times.items():
        out[name] = {
            "median_ms": round(statistics.median(values) * 1000, 2),
            "min_ms": round(min(values) * 1000, 2),
            "all_ms": [round(v * 1000, 2) for v in values],
        }
    if "ours" in times and "evidently" in times:
        out["evidently_over_ours"] = round(
            statistics.median(times["evidently"]) / statistics.median(times["ours"]), 2
        )
    return out


def detection(n: int, seeds: int, tools: dict[str, Tool]) -> dict[str, Any]:
    """Per-tool flag rates over ``seeds`` shifted and ``seeds`` null pairs of ``n`` rows."""
    columns = (*NUMERIC, *CATEGORICAL)
    hits = {name: dict.fromkeys(columns, 0) for name in tools}
    null_hits = {name: dict.fromkeys(columns, 0) for name in tools}
    dataset = {name: {"shifted": 0, "null": 0} for name in tools}
    for seed in range(seeds):
        for shifted in (True, False):
            reference, current = make_pair(n, seed, shifted)
            for name, tool in tools.items():
                verdict = tool(reference, current)
                target = hits if shifted else null_hits
                for column in verdict.flagged:
                    target[name][column] += 1
                dataset[name]["shifted" if shifted else "null"] += verdict.dataset_drift
    unshifted = [c for c in columns if c not in DRIFTED_COLUMNS]
    out: dict[str, Any] = {"rows": n, "seeds": seeds}
    for name in tools:
        false_alarms = sum(hits[name][c] for c in unshifted) + sum(null_hits[name].values())
        trials = seeds * len(unshifted) + seeds * len(columns)
        out[name] = {
            "detection_rate": {c: hits[name][c] / seeds for c in DRIFTED_COLUMNS},
            "detection_rate_mean": sum(hits[name][c] for c in DRIFTED_COLUMNS)
            / (seeds * len(DRIFTED_COLUMNS)),
            "false_alarm_rate_per_feature": false_alarms / trials,
            "false_alarm_trials": trials,
            "dataset_drift_rate_shifted": dataset[name]["shifted"] / seeds,
            "dataset_drift_rate_null": dataset[name]["null"] / seeds,
        }
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(prog="python -m bench.drift_speed", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="rows per window, comma list")
    parser.add_argument("--repeats", default="7,5", help="timed runs per size, comma list")
    parser.add_argument("--seeds", default="20,5", help="detection seeds per size, comma list")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "drift_speed.json")
    return parser.parse_args(argv)


def _ints(text: str, n: int, flag: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if len(values) == 1:
        values *= n
    if len(values) != n:
        raise SystemExit(f"{flag}: expected 1 or {n} values, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Time both tools, measure their detection rates, print tables, write JSON."""
    args = parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    repeats = _ints(args.repeats, len(sizes), "--repeats")
    seeds = _ints(args.seeds, len(sizes), "--seeds")
    settings = Settings()
    tools: dict[str, Tool] = {
        "ours": lambda ref, cur: run_ours(ref, cur, settings),
        "evidently": run_evidently,
    }
    started = time.perf_counter()
    speeds = [speed(n, r, tools) for n, r in zip(sizes, repeats, strict=True)]
    detections = [detection(n, s, tools) for n, s in zip(sizes, seeds, strict=True)]
    total = time.perf_counter() - started

    print("Drift report wall time (23 columns; median of timed runs after one warm-up)\n")
    print(
        markdown_table(
            ["rows per window", "ours (ms)", "Evidently (ms)", "Evidently / ours"],
            [
                [
                    f"{s['rows']:,}",
                    f"{s['ours']['median_ms']:.1f}",
                    f"{s['evidently']['median_ms']:.1f}",
                    f"{s['evidently_over_ours']:.1f}x",
                ]
                for s in speeds
            ],
        )
    )
    print("\nDetection (shifted: num_0..4 by 0.1/0.15/0.2/0.3/0.5 std, cat_0 shares)\n")
    header = ["rows", "seeds", "tool", *(f"{c} ({SHIFTS[c]})" for c in SHIFTS)]
    header += [
        SHIFTED_CATEGORICAL,
        "false alarms / feature",
        "dataset drift shifted",
        "dataset drift null",
    ]
    rows = []
    for d in detections:
        for name in tools:
            r = d[name]
            rows.append(
                [
                    f"{d['rows']:,}",
                    d["seeds"],
                    name,
                    *(f"{r['detection_rate'][c]:.2f}" for c in DRIFTED_COLUMNS),
                    f"{r['false_alarm_rate_per_feature']:.3f}",
                    f"{r['dataset_drift_rate_shifted']:.2f}",
                    f"{r['dataset_drift_rate_null']:.2f}",
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
        "speed": speeds,
        "detection": detections,
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
