"""Import cost of the flow modules: what a flow process loads before its first line runs.

A structural check, not a timed one (timings vary with the machine's load; ``python -m
bench.import_cost`` measures them): importing the deployed flow modules must not load the
training stack, which only a retrain uses (issue 14, "Import cost").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every deployed entrypoint (prefect.yaml), the cycle's first.
FLOW_MODULES = (
    "flows.continuous_training",
    "flows.generate",
    "flows.detect_drift",
    "flows.retrain",
    "flows.notify",
    "flows.ingest_labels",
)
TRAINING_STACK = (
    "sklearn",
    "ia_continu.training.trainer",
    # Not ia_continu.training.windows: pure Python (math, pandas) and imported with the
    # typed gate result (ia_continu.loop.results), which names its WindowChoice.
    "ia_continu.training.promotion",
    "ia_continu.monitoring.estimation",
)
# Heavy libraries a cycle needs only once it runs (and some cycles never do).
DEFERRED = ("mlflow", "scipy", "pandera")


def loaded_after_import(modules: tuple[str, ...], prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with one of ``prefixes`` that a fresh interpreter holds after
    importing ``modules`` (from the repository root, as a flow run does)."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_flow_modules_do_not_import_the_training_stack_or_deferred_libraries() -> None:
    loaded = loaded_after_import(FLOW_MODULES, TRAINING_STACK + DEFERRED)
    assert loaded == []


def test_the_probe_sees_the_training_stack_when_it_is_imported() -> None:
    # Guards the test above against a probe that could never see anything.
    loaded = loaded_after_import(
        ("ia_continu.training.trainer",), ("sklearn", "ia_continu.training.trainer")
    )
    assert "ia_continu.training.trainer" in loaded
    assert "sklearn.pipeline" in loaded
