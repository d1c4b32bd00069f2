"""What a flow run pays before its first line runs: importing the flow module.

Each run starts a fresh interpreter (as a process-pool or Docker-pool flow run does) and
imports ``MODULE`` (default ``flows.continuous_training``) under ``python -X importtime``;
reports the median wall time over ``--runs`` and the packages with the largest cumulative
import time (``python -X importtime`` docs: the second column is self + children, in µs).

    python -m bench.import_cost [--module flows.continuous_training] [--runs 5] [--top 15]

Writes ``bench/results/import_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "import_cost.json"


def import_once(module: str) -> tuple[float, dict[str, int]]:
    """Wall seconds of ``import module`` in a fresh interpreter, and each top-level
    package's largest cumulative import time (µs) from ``-X importtime``.

    Raises:
        subprocess.CalledProcessError: the import failed.
    """
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    packages: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        if not cumulative.isdigit():
            continue  # the header line
        top = name.split(".")[0]
        packages[top] = max(packages.get(top, 0), int(cumulative))
    return wall, packages


def main(argv: list[str] | None = None) -> int:
    """Measure the flow module's import time; print the top contributors, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="flows.continuous_training")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    walls: list[float] = []
    totals: dict[str, list[int]] = {}
    for _ in range(args.runs):
        wall, packages = import_once(args.module)
        walls.append(wall)
        for name, micros in packages.items():
            totals.setdefault(name, []).append(micros)
    top = sorted(
        ((name, statistics.median(v) / 1e6) for name, v in totals.items()),
        key=lambda item: item[1],
        reverse=True,
    )[: args.top]
    result = {
        "module": args.module,
        "runs": args.runs,
        "wall_seconds_median": round(statistics.median(walls), 2),
        "wall_seconds": [round(w, 2) for w in walls],
        "top_packages_seconds": {name: round(seconds, 3) for name, seconds in top},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"import {args.module}: median {result['wall_seconds_median']} s over {args.runs} runs")
    for name, seconds in top:
        print(f"  {name:<24} {seconds:6.2f} s (cumulative, nested packages overlap)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
