"""Prediction API vs MLflow's scoring server (``mlflow models serve``), same model, same run.

Both servers get one worker and serve the same registered version of an Elec2
classifier. ``wrk`` (Debian package, one thread, as it shares the 2 cores) sends
single-row requests over 16 connections. Our API runs with bearer-token auth,
Prometheus metrics and the prediction log on, once with its per-request access log
(the default) and once without. Then a 10,000-row batch is timed end to end from an
httpx client.

    python -m bench.api_throughput [--duration 20] [--connections 16]

Writes ``bench/results/api_throughput.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import RESULTS_DIR, fmt, machine, markdown_table, summarize_ms
from devkit.models import elec2_rows, register_version
from devkit.processes import free_port, spawn, stop, wait_healthy
from ia_continu.auth.tokens import create_token
from ia_continu.data.storage.engine import get_engine
from ia_continu.settings import Settings

MODEL = "bench-classifier"
# Our API in three configurations: name -> (table label, extra environment).
OURS: dict[str, tuple[str, dict[str, str]]] = {
    "ours": ("IA Continu API (defaults: access log on)", {}),
    "ours_no_access_log": ("IA Continu API (access log off)", {"IAC_API_ACCESS_LOG": "false"}),
    "ours_sklearn": ("IA Continu API (defaults, ONNX off)", {"IAC_API_ONNX": "false"}),
}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _lua(path: Path, body: str, headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(
    url: str, script: Path, duration: int, connections: int, threads: int = 1
) -> dict[str, Any]:
    """One ``wrk --latency`` run; returns requests/s, p50/p90/p99 (ms), errors."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    percentiles = {
        f"p{m.group(1)}_ms": round(float(m.group(2)) * _UNITS[m.group(3)], 3)
        for m in re.finditer(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests_per_s": round(rps, 1),
        **percentiles,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else None,
    }


def time_batch(url: str, body: bytes, headers: dict[str, str], n: int) -> dict[str, Any]:
    """Client-side wall time of ``n`` sequential batch requests (after 2 warm-ups)."""
    seconds = []
    with httpx.Client(timeout=60) as client:
        for i in range(n + 2):
            start = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            if i >= 2:
                seconds.append(elapsed)
    return summarize_ms(seconds)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns the exit status (1 if a target is missed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch-repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="iac-bench-api-"))
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    version = register_version(tracking, MODEL)
    settings = Settings(data_dir=tmp / "state", mlflow_tracking_uri=tracking)
    _, token = create_token(get_engine(settings.resolved_database_url), "bench")
    row = elec2_rows(1)[0]
    batch = json.dumps({"rows": elec2_rows(10_000)}).encode()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("IAC_", "MLFLOW_"))}
    # mlflow models serve execs `uvicorn` from PATH: the venv's bin must come first.
    env |= {
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    ports = {name: free_port() for name in (*OURS, "mlflow")}
    ours_env = env | {
        "IAC_DATA_DIR": str(tmp / "state"),
        "IAC_MLFLOW_TRACKING_URI": tracking,
        "IAC_REGISTERED_MODEL_NAME": MODEL,
        "IAC_API_AUTH": "token",
        "IAC_API_PREDICTION_LOG": "true",
    }
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    mlflow_port = ports["mlflow"]
    servers = {
        name: spawn(
            [sys.executable, "-m", "api"],
            tmp / f"{name}.log",
            ours_env | {"IAC_API_PORT": str(ports[name])} | extra,
        )
        for name, (_, extra) in OURS.items()
    } | {
        "mlflow": spawn(
            [
                mlflow_cli,
                "models",
                "serve",
                "-m",
                f"models:/{MODEL}/{version}",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            tmp / "mlflow.log",
            env,
        ),
    }
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    plain = {"Content-Type": "application/json"}
    targets = {
        name: (f"http://127.0.0.1:{ports[name]}/predict", json.dumps(row), auth) for name in OURS
    } | {
        "mlflow": (
            f"http://127.0.0.1:{mlflow_port}/invocations",
            json.dumps({"dataframe_records": [row]}),
            plain,
        ),
    }
    results: dict[str, Any] = {"machine": machine(), "connections": args.connections}
    try:
        for name in OURS:
            wait_healthy(
                f"http://127.0.0.1:{ports[name]}/ready", servers[name], tmp / f"{name}.log"
            )
        wait_healthy(f"http://127.0.0.1:{mlflow_port}/ping", servers["mlflow"], tmp / "mlflow.log")
        for name, (url, body, headers) in targets.items():
            script = _lua(tmp / f"{name}.lua", body, headers)
            run_wrk(url, script, 3, args.connections)  # warm-up
            results[name] = run_wrk(url, script, args.duration, args.connections)
        for name in OURS:
            results[name]["batch_10k"] = time_batch(
                f"http://127.0.0.1:{ports[name]}/predict/batch", batch, auth, args.batch_repeats
            )
        records = json.dumps({"dataframe_records": json.loads(batch)["rows"]}).encode()
        results["mlflow"]["batch_10k"] = time_batch(
            targets["mlflow"][0], records, plain, args.batch_repeats
        )
        time.sleep(2)  # let the prediction log flush
        for name in OURS:
            metrics = httpx.get(f"http://127.0.0.1:{ports[name]}/metrics").text
            for key in ("written", "dropped", "failed"):
                found = re.search(
                    rf"^iac_api_prediction_log_{key}_total ([\d.e+]+)$", metrics, re.M
                )
                results[name][f"prediction_log_{key}"] = float(found.group(1)) if found else None
    finally:
        for proc in servers.values():
            stop(proc)
    theirs = results["mlflow"]
    for name in OURS:
        ours = results[name]
        ours["throughput_ratio"] = round(ours["requests_per_s"] / theirs["requests_per_s"], 2)
        ours["targets"] = {
            "ratio_at_least_4": ours["throughput_ratio"] >= 4,
            "p99_under_20ms": ours["p99_ms"] < 20,
            "batch_10k_under_100ms": ours["batch_10k"]["median_ms"] < 100,
        }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "api_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        markdown_table(
            ["server", "req/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx", "10k batch median ms"],
            [
                [
                    n,
                    fmt(r["requests_per_s"]),
                    fmt(r["p50_ms"], 2),
                    fmt(r["p90_ms"], 2),
                    fmt(r["p99_ms"], 2),
                    r["non_2xx"],
                    fmt(r["batch_10k"]["median_ms"]),
                ]
                for n, r in (
                    *((label, results[name]) for name, (label, _) in OURS.items()),
                    ("mlflow models serve", theirs),
                )
            ],
        )
    )
    for name in OURS:
        r = results[name]
        print(f"{name}: {r['throughput_ratio']}x MLflow; targets {r['targets']}")
    print(f"logs: {tmp}")
    return 0 if all(results["ours_no_access_log"]["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
