"""Wall time of real continuous-training cycles: SQLite + a real MLflow tracking server.

Starts ``mlflow server`` on 127.0.0.1 (a free port; SQLite backend and artifact store in a
temporary directory), then runs ``--cycles`` cycles over the Elec2 replay through the
I/O functions the flows call, in the flows' order:

``ingest`` → ``load_drift_inputs`` → ``evaluate_drift`` → ``persist_drift_report`` and,
when the report says retrain, ``load_training_window`` → ``train_and_gate`` →
``record_challenger``.

Each cycle is timed end to end and per stage. Cycle 1 is the bootstrap (no champion,
cold database and server) and is reported apart; the other cycles are split into cycles
with and without a retrain. ``--cold-caches`` clears the in-process caches (engine +
migrations, loaded models) before every cycle, as when each flow run is a fresh process.
The server is stopped at the end, whatever happens.

Usage: ``.venv/bin/python -m bench.cycle_wall_time [--cycles 60] [--cold-caches]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._common import RESULTS_DIR, fmt, markdown_table, summarize_ms, write_json
from ia_continu.data.storage.engine import get_engine
from ia_continu.loop import cycle
from ia_continu.loop.results import RetrainOutcome
from ia_continu.settings import Settings
from ia_continu.training import registry

STAGES = (
    "ingest",
    "load_drift_inputs",
    "evaluate_drift",
    "persist_drift_report",
    "load_training_window",
    "train_and_gate",
    "record_challenger",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_executable() -> str:
    """``mlflow`` next to the running interpreter (the project's venv), else on PATH."""
    candidate = Path(sys.executable).parent / "mlflow"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("mlflow")
    if found is None:
        raise FileNotFoundError("mlflow executable not found next to python nor on PATH")
    return found


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({process.returncode}):\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server not healthy after {timeout:.0f} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group (it has uvicorn children), then SIGKILL."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def mlflow_server(workdir: Path, startup_timeout: float = 180.0) -> Iterator[str]:
    """Run ``mlflow server`` with state under ``workdir``; yields its tracking URI."""
    port = free_port()
    log = workdir / "mlflow-server.log"
    command = [
        mlflow_executable(),
        "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", str(workdir / "artifacts"),
        "--serve-artifacts",
        "--workers", "1",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, startup_timeout, log)
        yield url
    finally:
        _stop(process)


def clear_caches() -> None:
    """Forget engines (and their migration check) and loaded models, like a new process."""
    get_engine.cache_clear()
    # The model cache lives on ``load_model`` or on a private helper, depending on version.
    for function in (registry.load_model, getattr(registry, "_load_model", None)):
        cache_clear = getattr(function, "cache_clear", None)
        if callable(cache_clear):
            cache_clear()


def run_cycle(settings: Settings) -> dict[str, Any]:
    """One cycle through the real I/O functions; per-stage seconds and the outcome."""
    stages: dict[str, float] = {}

    def lap(name: str, start: float) -> float:
        now = time.perf_counter()
        stages[name] = now - start
        return now

    begin = t = time.perf_counter()
    batch = cycle.ingest(settings)
    t = lap("ingest", t)
    inputs = cycle.load_drift_inputs(settings)
    t = lap("load_drift_inputs", t)
    report = cycle.evaluate_drift(inputs, settings)
    t = lap("evaluate_drift", t)
    report_id = cycle.persist_drift_report(settings, report)
    t = lap("persist_drift_report", t)
    outcome: RetrainOutcome | None = None
    retrain = report.decision.trigger is not None
    if report.decision.trigger is not None:
        window = cycle.load_training_window(settings, report_id)
        t = lap("load_training_window", t)
        challenger, decision = cycle.train_and_gate(window, settings)
        t = lap("train_and_gate", t)
        outcome = cycle.record_challenger(
            settings,
            window,
            challenger,
            decision,
            trigger=report.decision.trigger,
            drift_report_id=report_id,
        )
        t = lap("record_challenger", t)
    return {
        "batch_id": batch.batch_id,
        "position": batch.position,
        "seconds": t - begin,
        "stages": stages,
        "retrain": retrain,
        "reason": report.decision.reason,
        "data_drift": report.has_data_drift,
        "promoted": bool(outcome and outcome.promoted),
    }


def summarize(cycles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals and per-stage timings (ms) of ``cycles``."""
    return {
        "cycles": len(cycles),
        "total_ms": summarize_ms([c["seconds"] for c in cycles]),
        "stages_ms": {
            stage: summarize_ms([c["stages"][stage] for c in cycles if stage in c["stages"]])
            for stage in STAGES
            if any(stage in c["stages"] for c in cycles)
        },
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; settings default to ``Settings()``."""
    d = Settings()
    parser = argparse.ArgumentParser(prog="python -m bench.cycle_wall_time", description=__doc__)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument(
        "--training-window-batches",
        default=",".join(map(str, d.training_window_batches)),
        help="candidate window sizes, comma list",
    )
    parser.add_argument("--concept-drift-alpha", type=float, default=d.concept_drift_alpha)
    parser.add_argument("--promotion-margin", type=float, default=d.promotion_margin)
    parser.add_argument(
        "--cold-caches",
        action="store_true",
        help="clear engine and model caches before each cycle (a fresh process per run)",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "cycle_wall_time.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server, run the cycles, print tables, write JSON, stop the server."""
    args = parse_args(argv)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="iac-bench-cycle-"))
    cycles: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        with mlflow_server(workdir) as tracking_uri:
            server_ready = time.perf_counter() - started
            settings = Settings(
                data_dir=workdir / "state",
                database_url=None,
                mlflow_tracking_uri=tracking_uri,
                mlflow_experiment="bench-cycle-wall-time",
                registered_model_name="bench-cycle-wall-time",
                data_source="replay",
                replay_loop=True,
                batch_size=args.batch_size,
                training_window_batches=args.training_window_batches,
                concept_drift_alpha=args.concept_drift_alpha,
                promotion_margin=args.promotion_margin,
            )
            clear_caches()
            for i in range(args.cycles):
                if args.cold_caches:
                    clear_caches()
                cycles.append(run_cycle(settings))
                c = cycles[-1]
                print(
                    f"cycle {i + 1:3d}/{args.cycles}: {c['seconds'] * 1000:8.1f} ms"
                    f"{'  retrain' if c['retrain'] else ''}{'  promoted' if c['promoted'] else ''}",
                    flush=True,
                )
    finally:
        clear_caches()
        if not args.keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started

    first, rest = cycles[:1], cycles[1:]
    groups = {
        "bootstrap (cycle 1)": summarize(first),
        "all later cycles": summarize(rest),
        "without retrain": summarize([c for c in rest if not c["retrain"]]),
        "with retrain": summarize([c for c in rest if c["retrain"]]),
    }
    print(
        f"\n{args.cycles} cycles, batch_size={settings.batch_size}, "
        f"cold caches={args.cold_caches}; MLflow server ready in {server_ready:.1f} s\n"
    )
    print(
        markdown_table(
            ["cycles", "n", "median (ms)", "p95 (ms)", "mean (ms)", "max (ms)"],
            [
                [
                    name,
                    g["cycles"],
                    fmt(g["total_ms"]["median_ms"]),
                    fmt(g["total_ms"]["p95_ms"]),
                    fmt(g["total_ms"]["mean_ms"]),
                    fmt(g["total_ms"]["max_ms"]),
                ]
                for name, g in groups.items()
            ],
        )
    )
    stage_rows = []
    for stage in STAGES:
        values = [c["stages"][stage] for c in rest if stage in c["stages"]]
        s = summarize_ms(values)
        stage_rows.append([stage, s["n"], fmt(s["median_ms"]), fmt(s["p95_ms"])])
    print("\nPer stage, cycles 2..N\n")
    print(markdown_table(["stage", "n", "median (ms)", "p95 (ms)"], stage_rows))
    payload = {
        "benchmark": "cycle_wall_time",
        "cycles": args.cycles,
        "cold_caches": args.cold_caches,
        "settings": {
            "batch_size": settings.batch_size,
            "training_window_batches": settings.training_window_batches,
            "concept_drift_alpha": settings.concept_drift_alpha,
            "promotion_margin": settings.promotion_margin,
            "estimator": settings.estimator,
        },
        "mlflow_server_startup_seconds": round(server_ready, 2),
        "retrains": sum(c["retrain"] for c in cycles),
        "promotions": sum(c["promoted"] for c in cycles),
        "summary": groups,
        "per_cycle": [
            {
                **{k: v for k, v in c.items() if k not in ("seconds", "stages")},
                "ms": round(c["seconds"] * 1000, 2),
                "stages_ms": {k: round(v * 1000, 2) for k, v in c["stages"].items()},
            }
            for c in cycles
        ],
        "total_seconds": round(total, 1),
    }
    out = write_json(args.output, payload)
    print(f"\nwrote {out} ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
