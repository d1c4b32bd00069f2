"""Container run time on the Docker work pool: scheduled start -> ``Completed`` of
``continuous_training``, without and with a retrain, and the share of runs skipped late.

Starts its own PostgreSQL, Prefect and MLflow servers on 127.0.0.1 (free ports, state in a
temporary directory), deploys the ``*-docker`` deployments with the README's bootstrap
(``python -m deployments.bootstrap --type docker``: ``prefect deploy`` builds the flows
image, tagged ``ia-continu-flows-bench:bench``), pauses their schedules and runs the
production worker command (the bootstrap's supervised ``prefect worker start``). After one
warm-up run (it trains the first champion), it schedules ``--runs`` flow runs with
``force_retrain=False`` then ``--runs`` with ``force_retrain=True``, one every schedule
interval (read from the deployment, 30 s), exactly as the schedule would, and reads their
states back from the Prefect API. A run the pile-up guard skips ends ``Completed`` with
the state name ``Skipped`` (``flows/guards.pileup_reason``'s message).

    python -m bench.container_runtime [--runs 20] [--worker-env KEY=VALUE ...]

Also records, for one run of each series, where the time goes: the flow run's state
timestamps (API), the container's ``docker events`` (create, start, die), the engine's
first log lines and the first child run, plus interpreter, ``import prefect.engine`` and
flow-module import times measured in the same image. Writes
``bench/results/container_runtime.json`` and ``.md`` with the machine's load average.
Needs the Docker engine (``infra/scripts/ensure-docker.sh``) and PostgreSQL's server
binaries (``infra/scripts/ensure-test-deps.sh``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import RESULTS_DIR, fmt, markdown_table, write_json
from devkit.deployed import docker_bootstrap_env, pause_schedules_and_clear
from devkit.processes import spawn, stop, wait_until
from devkit.servers import Stack, postgres, prefect_and_mlflow

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = RESULTS_DIR / "container_runtime.json"
RESULTS_MD = RESULTS_DIR / "container_runtime.md"
POOL = "bench-docker-pool"
IMAGE_NAME, IMAGE_TAG = "ia-continu-flows-bench", "bench"
BASE_IMAGE = os.environ.get("IAC_TEST_BASE_IMAGE", "ia-continu/python-base:bookworm")
DEPLOYMENT = "continuous_training/continuous-training-docker"
PAUSED = (DEPLOYMENT, "ingest_labels/ingest-labels-docker")
# The bench's runs keep their state in a volume of their own, not the pool's
# ``ia-continu-flow-state`` that a Docker test running meanwhile would share.
VOLUME = "ia-continu-bench-flow-state"
VOLUMES = [f"{VOLUME}:/var/lib/ia-continu"]
# The "without retrain" series must not retrain on Elec2's early concept drift or on the
# periodic challenge: only the decision changes (an error-rate rise of 99 points is never
# concept drift; 0 turns the challenge off); the drift report is computed as always.
NO_RETRAIN_ENV = {"IAC_CONCEPT_DRIFT_MIN_EFFECT": "0.99", "IAC_CHALLENGE_EVERY_CYCLES": "0"}
TARGETS_P95_S = {"without_retrain": 10.0, "with_retrain": 15.0}
SKIPPED = "Skipped"
STATS = ("median_s", "p95_s", "max_s")
# Bounds (seconds) for a loaded 2-core machine: an image build that reuses the dependency
# layer takes ~1 min, a cold one ~10 min; a bootstrap-champion run ~1 min.
BOOTSTRAP_LIMIT_S = 1800
WARMUP_LIMIT_S = 600
RUN_LIMIT_S = 600
FIRST_RUN_LEAD_S = 45  # worker started and polling before the first scheduled time


@dataclass(frozen=True)
class RunTiming:
    """One flow run as the Prefect API saw it (UTC datetimes; None where never reached)."""

    id: str
    name: str
    series: str
    scheduled: datetime
    pending: datetime | None
    start: datetime | None
    end: datetime | None
    state: str
    retrained: bool

    @property
    def seconds(self) -> float | None:
        """Scheduled start -> end, in seconds; None for a run that has not ended."""
        return None if self.end is None else (self.end - self.scheduled).total_seconds()


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation as numpy's default) or None."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize(runs: Sequence[RunTiming]) -> dict[str, Any]:
    """Per series: runs, completed (not skipped), skipped, failed (any other end or no
    end), median/p95/max of scheduled start -> ``Completed`` over the completed runs, in
    seconds, and whether p95 meets the series' target; overall: the skipped share.

    Returns:
        ``{"series": {name: {...}}, "runs": n, "skipped": n, "skipped_share": 0..1}``;
        a series without a completed run has None statistics.
    """
    series: dict[str, Any] = {}
    for name in dict.fromkeys(run.series for run in runs):
        members = [run for run in runs if run.series == name]
        done = [r.seconds for r in members if r.state == "Completed" and r.seconds is not None]
        skipped = sum(run.state == SKIPPED for run in members)
        p95 = percentile(done, 95)
        target = TARGETS_P95_S.get(name)
        series[name] = {
            "runs": len(members),
            "completed": len(done),
            "skipped": skipped,
            "failed": len(members) - len(done) - skipped,
            "retrained": sum(run.retrained for run in members),
            "median_s": None if not done else round(statistics.median(done), 2),
            "p95_s": None if p95 is None else round(p95, 2),
            "max_s": None if not done else round(max(done), 2),
            "target_p95_s": target,
            "meets_target": None if p95 is None or target is None else p95 <= target,
        }
    skipped_total = sum(run.state == SKIPPED for run in runs)
    return {
        "series": series,
        "runs": len(runs),
        "skipped": skipped_total,
        "skipped_share": round(skipped_total / len(runs), 4) if runs else None,
    }


class LoadSampler:
    """The 1-minute load average every ``every`` seconds, in a daemon thread."""

    def __init__(self, every: float = 15.0) -> None:
        """Start sampling at once."""
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self._every)

    def summary(self) -> dict[str, Any]:
        """Stop; the samples' mean and max, the last ``uptime`` line and the core count."""
        self._stop.set()
        uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        return {
            "loadavg_1m_mean": round(statistics.fmean(self.samples), 2) if self.samples else None,
            "loadavg_1m_max": round(max(self.samples), 2) if self.samples else None,
            "uptime_at_end": uptime,
            "cpu_count": os.cpu_count(),
        }


def _docker(*args: str, timeout: float = 120) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=timeout
    ).stdout


def _engine_or_exit() -> None:
    try:
        subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        raise SystemExit(
            "no Docker engine answering: run infra/scripts/ensure-docker.sh (as root) first"
        ) from None
    subprocess.run([str(ROOT / "infra/docker/base-image.sh"), BASE_IMAGE], check=True)


@contextmanager
def docker_events(log: Path) -> Iterator[Path]:
    """``docker events`` of Prefect flow-run containers, as JSON lines, into ``log``."""
    proc = spawn(
        [
            "docker",
            "events",
            "--filter",
            "type=container",
            "--filter",
            "label=io.prefect.flow-run-id",
            "--format",
            "{{json .}}",
        ],
        log,
    )
    try:
        yield log
    finally:
        stop(proc)


def container_events(log: Path) -> dict[str, dict[str, datetime]]:
    """Flow run id -> container action (create, start, die, destroy) -> its first time."""
    out: dict[str, dict[str, datetime]] = {}
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        run_id = event.get("Actor", {}).get("Attributes", {}).get("io.prefect.flow-run-id")
        action = str(event.get("Action") or event.get("status") or "")
        if not run_id or action not in ("create", "start", "die", "destroy"):
            continue
        when = datetime.fromtimestamp(int(event["timeNano"]) / 1e9, UTC)
        out.setdefault(run_id, {}).setdefault(action, when)
    return out


def image_timings(image: str, reps: int = 3) -> dict[str, float]:
    """Median seconds, in ``image`` (one container per measurement, as a flow run):
    ``docker run`` of ``python -c pass`` end to end, ``import prefect.engine``, then
    ``import flows.continuous_training`` on top."""
    code = (
        "import time; t0 = time.perf_counter(); import prefect.engine; "
        "t1 = time.perf_counter(); import flows.continuous_training; "
        "print(t1 - t0, time.perf_counter() - t1)"
    )
    empty, prefect_s, flow_s = [], [], []
    for _ in range(reps):
        started = time.perf_counter()
        _docker("run", "--rm", "--network", "host", "--entrypoint", "python", image, "-c", "pass")
        empty.append(time.perf_counter() - started)
        out = _docker(
            "run", "--rm", "--network", "host", "--entrypoint", "python", image, "-c", code
        )
        first, second = (float(x) for x in out.split())
        prefect_s.append(first)
        flow_s.append(second)
    return {
        "docker_run_python_pass_s": round(statistics.median(empty), 2),
        "import_prefect_engine_s": round(statistics.median(prefect_s), 2),
        "import_flow_module_s": round(statistics.median(flow_s), 2),
    }


async def _deployment_interval() -> tuple[Any, float]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(DEPLOYMENT)
        schedules = await client.read_deployment_schedules(deployment.id)
    intervals = [s.schedule.interval for s in schedules if hasattr(s.schedule, "interval")]
    if not intervals:
        raise SystemExit(f"{DEPLOYMENT} has no interval schedule in prefect.yaml")
    return deployment.id, float(intervals[0].total_seconds())


async def _schedule(deployment_id: Any, times: list[datetime], force_retrain: bool) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    ids = []
    async with get_client() as client:
        for when in times:
            run = await client.create_flow_run_from_deployment(
                deployment_id,
                parameters={"force_retrain": force_retrain},
                state=Scheduled(scheduled_time=when),
                job_variables={"volumes": VOLUMES, "env": {} if force_retrain else NO_RETRAIN_ENV},
            )
            ids.append(str(run.id))
    return ids


async def _read_runs(ids: list[str]) -> list[Any]:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs: list[Any] = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in ids]))
        )
    return runs


def _wait_final(ids: list[str], timeout: float) -> list[Any]:
    def final() -> list[Any] | None:
        runs = asyncio.run(_read_runs(ids))
        return runs if all(r.state is not None and r.state.is_final() for r in runs) else None

    def states() -> str:
        runs = asyncio.run(_read_runs(ids))
        return ", ".join(f"{r.name}: {r.state_name}" for r in runs)

    return wait_until(final, f"{len(ids)} flow run(s) to end", timeout, interval=5, describe=states)


async def _timing(run: Any, series: str) -> RunTiming:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    async with get_client() as client:
        states = await client.read_flow_run_states(run.id)
        retrains = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])),
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
            ),
        )
    pending = [s.timestamp for s in states if s.type.value == "PENDING"]
    scheduled = run.expected_start_time
    return RunTiming(
        id=str(run.id),
        name=run.name,
        series=series,
        scheduled=scheduled,
        pending=min(pending) if pending else None,
        start=run.start_time,
        end=run.end_time,
        state=run.state_name or "",
        retrained=bool(retrains),
    )


async def _breakdown(run: RunTiming, events: dict[str, dict[str, datetime]]) -> dict[str, Any]:
    """Seconds from the scheduled time to each step of ``run`` (negative: before it)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        logs = await client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run.id)])), limit=200
        )
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(run.id)])
            )
        )

    def rel(when: datetime | None) -> float | None:
        return None if when is None else round((when - run.scheduled).total_seconds(), 2)

    worker_logs = [log for log in logs if log.name.startswith("prefect.flow_runs.worker")]
    # From inside the container: `prefect flow-run execute`'s "Opening process..." (the
    # runner, before it starts the engine's own interpreter) or the engine's first line.
    engine_logs = [log for log in logs if not log.name.startswith("prefect.flow_runs.worker")]
    first_child = min((c.start_time for c in children if c.start_time is not None), default=None)
    container = events.get(run.id, {})
    steps = {
        "worker submitting (first worker log)": rel(
            min((log.timestamp for log in worker_logs), default=None)
        ),
        "Pending (worker took the run)": rel(run.pending),
        "container created": rel(container.get("create")),
        "container started": rel(container.get("start")),
        "first flow-run log from the container": rel(
            min((log.timestamp for log in engine_logs), default=None)
        ),
        "Running (flow imported, scheduled time reached)": rel(run.start),
        "first child run started (generate)": rel(first_child),
        "Completed": rel(run.end),
        "container died (logs shipped, process exited)": rel(container.get("die")),
    }
    return {
        "run": run.name,
        "series": run.series,
        "seconds_from_scheduled": steps,
        "engine_logs": [
            {"t": rel(log.timestamp), "logger": log.name, "message": log.message[:160]}
            for log in engine_logs[:12]
        ],
    }


def _bootstrap(env: dict[str, str], log: Path) -> None:
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "deployments.bootstrap", "--pool", POOL, "--type", "docker"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=BOOTSTRAP_LIMIT_S,
        )
    if done.returncode != 0:
        raise SystemExit(f"bootstrap failed ({done.returncode}):\n{log.read_text()[-4000:]}")


def _cleanup() -> None:
    """Remove the bench's flow-run containers (a run cut short) and its volume; best effort
    (the engine may be gone), so that a cleanup never hides the measurement's own error."""
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"volume={VOLUME}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if listed.stdout.split():
        subprocess.run(
            ["docker", "rm", "-f", *listed.stdout.split()], capture_output=True, timeout=120
        )
    subprocess.run(["docker", "volume", "rm", "-f", VOLUME], capture_output=True, timeout=120)


def measure(
    stack: Stack, database_url: str, runs: int, worker_env: dict[str, str]
) -> dict[str, Any]:
    """Deploy, start the worker, run the warm-up and both series; the JSON payload."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = docker_bootstrap_env(
        stack, database_url, base_image=BASE_IMAGE, image_name=IMAGE_NAME, image_tag=IMAGE_TAG
    )
    started = time.monotonic()
    print("bootstrap: prefect deploy builds the flows image ...", flush=True)
    _bootstrap(env, stack.home / "bootstrap.log")
    print(f"bootstrap done in {time.monotonic() - started:.0f} s", flush=True)
    with temporary_settings(updates={PREFECT_API_URL: stack.prefect_api_url}):
        for name in PAUSED:
            asyncio.run(pause_schedules_and_clear(name))
        deployment_id, interval = asyncio.run(_deployment_interval())
        worker_log = stack.home / "worker.log"
        worker = spawn(
            [sys.executable, "-m", "deployments.bootstrap", "--pool", POOL, "--type", "docker"]
            + ["--worker-only"],
            worker_log,
            {**env, **worker_env},
        )
        try:
            with docker_events(stack.home / "docker-events.jsonl") as events_log:
                warm = datetime.now(UTC) + timedelta(seconds=FIRST_RUN_LEAD_S)
                warm_ids = asyncio.run(_schedule(deployment_id, [warm], force_retrain=False))
                print("warm-up run (trains the first champion) ...", flush=True)
                _wait_final(warm_ids, WARMUP_LIMIT_S)
                load = LoadSampler()
                first = datetime.now(UTC) + timedelta(seconds=FIRST_RUN_LEAD_S)
                times = [first + timedelta(seconds=interval * i) for i in range(2 * runs)]
                without = asyncio.run(_schedule(deployment_id, times[:runs], force_retrain=False))
                with_ = asyncio.run(_schedule(deployment_id, times[runs:], force_retrain=True))
                print(
                    f"{2 * runs} runs scheduled every {interval:.0f} s from {first:%H:%M:%S} UTC",
                    flush=True,
                )
                seen = _wait_final(
                    without + with_, FIRST_RUN_LEAD_S + interval * 2 * runs + RUN_LIMIT_S
                )
                machine_load = load.summary()
            by_id = {str(run.id): run for run in seen}
            timings = [asyncio.run(_timing(by_id[i], "without_retrain")) for i in without]
            timings += [asyncio.run(_timing(by_id[i], "with_retrain")) for i in with_]
            events = container_events(events_log)
            breakdowns = [
                asyncio.run(_breakdown(_median_run(timings, name), events))
                for name in ("without_retrain", "with_retrain")
                if any(t.series == name and t.state == "Completed" for t in timings)
            ]
        finally:
            stop(worker)
            _cleanup()
    in_image = image_timings(f"{IMAGE_NAME}:{IMAGE_TAG}")
    return {
        "deployment": DEPLOYMENT,
        "interval_s": interval,
        "worker_env": worker_env,
        "summary": summarize(timings),
        "load": machine_load,
        "image_timings": in_image,
        "breakdown": breakdowns,
        "runs": [{**asdict(t), "seconds": t.seconds} for t in timings],
    }


def _median_run(timings: list[RunTiming], series: str) -> RunTiming:
    done = sorted(
        (t for t in timings if t.series == series and t.state == "Completed"),
        key=lambda t: t.seconds or 0.0,
    )
    return done[len(done) // 2]


def render(result: dict[str, Any]) -> str:
    """The markdown report of a :func:`measure` payload."""
    summary, load = result["summary"], result["load"]
    rows = [
        [
            name,
            s["runs"],
            s["completed"],
            s["skipped"],
            s["failed"],
            s["retrained"],
            fmt(s["median_s"]),
            fmt(s["p95_s"]),
            fmt(s["max_s"]),
            fmt(s["target_p95_s"], 0),
            {True: "yes", False: "no", None: "—"}[s["meets_target"]],
        ]
        for name, s in summary["series"].items()
    ]
    lines = [
        "# Container run time (Docker work pool)",
        "",
        f"`python -m bench.container_runtime --runs {summary['runs'] // 2}`; worker env "
        f"`{result['worker_env'] or '{}'}`. Scheduled start -> Completed, seconds.",
        "",
        markdown_table(
            [
                "series",
                "runs",
                "completed",
                "skipped",
                "failed",
                "retrained",
                "median",
                "p95",
                "max",
                "p95 target",
                "met",
            ],
            rows,
        ),
        "",
        f"Skipped share: {summary['skipped_share']:.1%}. Load average (1 min) during the "
        f"series: mean {load['loadavg_1m_mean']}, max {load['loadavg_1m_max']} on "
        f"{load['cpu_count']} cores (`{load['uptime_at_end']}`).",
        "",
        "In the image (median of 3 containers): "
        + ", ".join(f"{k} {v} s" for k, v in result["image_timings"].items()),
    ]
    before = result.get("before")
    if before:
        # A payload may carry the measurement before a change (same bench, other config).
        lines += ["", f"## Before: {before['config']}", ""]
        lines.append(
            markdown_table(
                ["series", "median before", "p95 before", "max before", "median", "p95", "max"],
                [
                    [
                        name,
                        *(fmt(before["summary"]["series"][name][k]) for k in STATS),
                        *(fmt(s[k]) for k in STATS),
                    ]
                    for name, s in summary["series"].items()
                    if name in before["summary"]["series"]
                ],
            )
        )
        lines += [
            "",
            f"Before: skipped share {before['summary']['skipped_share']:.1%}, load average "
            f"mean {before['load']['loadavg_1m_mean']}, max {before['load']['loadavg_1m_max']}.",
        ]
    for item in result["breakdown"]:
        lines += [
            "",
            f"## Where the time goes: {item['run']} ({item['series']}, the median run)",
            "",
            markdown_table(
                ["step", "s from scheduled time"],
                [[k, fmt(v, 2)] for k, v in item["seconds_from_scheduled"].items()],
            ),
        ]
    for item in before["breakdown"] if before else []:
        lines += [
            "",
            f"## Before, where the time went: {item['run']} ({item['series']}, the median run)",
            "",
            markdown_table(
                ["step", "s from scheduled time"],
                [[k, fmt(v, 2)] for k, v in item["seconds_from_scheduled"].items()],
            ),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure; print the markdown report; write the JSON and markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="flow runs per series")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the worker (e.g. PREFECT_WORKER_PREFETCH_SECONDS=25)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_JSON, help="JSON result file")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    _engine_or_exit()
    # Kept on failure: the server, worker and bootstrap logs say what went wrong.
    home = Path(tempfile.mkdtemp(prefix="iac-bench-containers-"))
    print(f"servers and logs under {home}", flush=True)
    with postgres() as database_url, prefect_and_mlflow(home) as stack:
        result = measure(stack, database_url, args.runs, worker_env)
    shutil.rmtree(home, ignore_errors=True)
    report = render(result)
    print(report)
    write_json(args.output, result)
    args.output.with_suffix(".md").write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
