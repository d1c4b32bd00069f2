"""Bootstrap a Prefect server for IA Continu, then (optionally) become its worker.

Idempotent: waits for the Prefect and MLflow servers, migrates the project database,
creates the work pool (its concurrency limit set to ``IAC_WORK_POOL_CONCURRENCY``) and the
retrain global concurrency limit, stores the Discord webhook as a Secret block when
``IAC_DISCORD_WEBHOOK_URL`` is set, deploys the ``prefect.yaml`` deployments of the pool's
type and, with ``--worker``, runs ``prefect worker start`` under a supervisor.

    python -m deployments.bootstrap [--worker | --worker-only] [--pool NAME]
                                    [--type process|docker]

``--worker-only`` skips the bootstrap (done elsewhere) and only runs the supervised worker.

The supervisor (:func:`supervise`) keeps the loop alive through a Prefect outage: the
worker exits after about a minute of failed polls, so it is restarted once the API
answers again. Before each start and every few seconds it sweeps the pool
(:func:`sweep_pool`): runs whose process is gone, or that sat ``Running``/``Pending``
past the stale bound, are marked ``Crashed`` (they would hold work-pool slots for ever),
and scheduled runs more than one interval late (the backlog of an outage) are closed as
``Skipped`` before any process starts for them.

``--type docker`` deploys the ``*-docker`` deployments: ``prefect deploy`` builds the
flows image (``IAC_IMAGE_NAME``:``IAC_IMAGE_TAG`` from ``IAC_BASE_IMAGE``) on the local
Docker engine, and the database URL, which flow containers need and which holds a
password, is stored as the Secret block ``ia-continu-database-url`` for the worker to
resolve at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from loguru import logger

from flows.guards import crash, is_stale, read_interval, stale_bound, stale_message
from ia_continu.data.storage.engine import get_engine
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.stream_check import stream_or_exit
from ia_continu.settings import Settings, get_settings, settings_or_exit

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATABASE_URL_BLOCK = "ia-continu-database-url"
#: The shortest schedule interval the loop supports (``IAC_SCHEDULE_INTERVAL_SECONDS`` >= 5).
SHORTEST_INTERVAL = timedelta(seconds=5)
DOCKER_SUFFIX = "-docker"
# prefect.yaml's build step and job variables read these; a value unset here would be
# templated to an empty string by `prefect deploy`.
DOCKER_DEFAULTS = {
    "IAC_IMAGE_NAME": "ia-continu-flows",
    "IAC_IMAGE_TAG": "local",
    "IAC_BASE_IMAGE": "python:3.11-slim-bookworm",
    "IAC_DOCKER_NETWORK_MODE": "host",
}


def wait_for(url: str, name: str, timeout: float = 120.0) -> None:
    """Poll ``url`` until it answers 2xx.

    Raises:
        SystemExit: with a message naming the server, after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{name} did not answer at {url} within {timeout:.0f} s")


async def ensure_prefect_objects(
    pool: str, pool_type: str, limit_name: str, pool_concurrency: int = 2
) -> None:
    """Create the work pool and the global concurrency limit unless they exist, and set
    the pool's concurrency limit to ``pool_concurrency`` flow runs (Pending + Running):
    after an outage the worker never starts more than that many processes at once."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        WorkPoolCreate,
        WorkPoolUpdate,
    )
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    async with get_client() as client:
        try:
            await client.create_work_pool(
                WorkPoolCreate(name=pool, type=pool_type, description="IA Continu flows")
            )
            logger.info("created work pool {} ({})", pool, pool_type)
        except ObjectAlreadyExists:
            logger.info("work pool {} exists", pool)
        # Unset fields are not sent (exclude_unset): only the limit changes.
        await client.update_work_pool(
            pool,
            WorkPoolUpdate(concurrency_limit=pool_concurrency),  # type: ignore[call-arg]
        )
        logger.info("work pool {} runs at most {} flow run(s) at once", pool, pool_concurrency)
        # Read first: on PostgreSQL a duplicate create is a bare 409, not
        # ObjectAlreadyExists as on SQLite.
        try:
            await client.read_global_concurrency_limit_by_name(limit_name)
            logger.info("global concurrency limit {} exists", limit_name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name, limit=1)  # type: ignore[arg-type]
            )
            logger.info("created global concurrency limit {} (1 slot)", limit_name)


def _process_gone(infrastructure_pid: str | None) -> bool:
    """True when a process-pool run's ``host:pid`` names a process of this host that no
    longer exists (its worker died with it). Anything else (another host, a container
    id, no pid yet, a process we may not signal) is not evidence of death."""
    host, _, pid = (infrastructure_pid or "").partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep_pool(
    pool: str,
    *,
    interval: timedelta,
    bound: timedelta,
    check_pids: bool,
    now: datetime | None = None,
) -> dict[str, list[str]]:
    """Free ``pool`` of dead runs and close the late backlog, through the Prefect API.

    - ``Pending``/``Running`` runs whose process is gone (``check_pids``: a process pool
      on this host) or that entered their state more than ``bound`` ago are marked
      ``Crashed``: they hold work-pool slots until they leave those states.
    - Auto-scheduled runs still ``Scheduled``/``Late`` more than one interval after their
      time are closed as ``Completed``/``Skipped``, as the flow's own guard would close
      them, but before a process (5+ s of imports each) starts for them. The interval is
      the run's deployment's schedule as the API holds it (``prefect.yaml`` or the UI:
      ``flows.guards.read_interval``), ``interval`` only for a deployment without one.

    Returns ``{"crashed": [names], "skipped": [names], "in_flight": [names]}`` (the
    last: ``Pending``/``Running`` runs left alone).

    Raises:
        httpx.HTTPError, prefect.exceptions.PrefectHTTPStatusError: API unreachable.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Completed

    now = now or datetime.now(UTC)
    in_pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))
    crashed: list[str] = []
    skipped: list[str] = []
    in_flight: list[str] = []
    with get_client(sync_client=True) as client:
        current = client.read_flow_runs(
            work_pool_filter=in_pool,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING]),
                    name=None,
                )
            ),
        )
        for run in current:
            since: Any = run.start_time if run.state_type == StateType.RUNNING else None
            if since is None and run.state is not None:
                since = run.state.timestamp
            if check_pids and _process_gone(run.infrastructure_pid):
                why = (
                    f"its process ({run.infrastructure_pid}) is gone, with the worker that"
                    " started it; marked Crashed by the worker supervisor"
                )
            elif is_stale(since, now, bound):
                why = stale_message(bound)
            else:
                in_flight.append(run.name)
                continue
            if crash(client, run.id, why):
                crashed.append(run.name)
        late = client.read_flow_runs(
            work_pool_filter=in_pool,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]), name=None
                ),
                # The shortest interval a schedule may have (IAC_* settings refuse < 5 s);
                # each run is then held to its own deployment's interval below.
                expected_start_time=FlowRunFilterExpectedStartTime(
                    before_=now - min(interval, SHORTEST_INTERVAL)
                ),
            ),
            limit=200,
        )
        intervals: dict[Any, timedelta] = {}
        for run in late:
            if not run.auto_scheduled or run.expected_start_time is None:
                continue  # a run someone asked for waits its turn, however late
            if run.deployment_id not in intervals:
                intervals[run.deployment_id] = read_interval(client, run.deployment_id) or interval
            own = intervals[run.deployment_id]
            late_by = (now - run.expected_start_time).total_seconds()
            if late_by <= own.total_seconds():
                continue
            message = (
                f"skipped: late by {late_by:.0f} s (> {own.total_seconds():.0f} s),"
                " backlog of an outage; the next scheduled run does the work"
            )
            result = client.set_flow_run_state(run.id, Completed(name="Skipped", message=message))
            if result.state is not None and result.state.name == "Skipped":
                skipped.append(run.name)
    return {"crashed": crashed, "skipped": skipped, "in_flight": in_flight}


def _api_healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2.0).is_success
    except httpx.HTTPError:
        return False


def supervise(
    command: list[str],
    *,
    api_url: str,
    pool: str,
    interval: timedelta,
    bound: timedelta,
    check_pids: bool,
    restart_delay: float = 5.0,
) -> int:
    """Run the worker ``command`` until SIGTERM/SIGINT, restarting it whenever it exits.

    A Prefect 2.20 worker exits after about a minute of failed polls, and after a
    shorter outage sits in a back-off of up to a minute between polls. Here the worker
    is restarted once ``api_url`` answers again: when it exited, and when the API comes
    back with no run of the pool in flight (a fresh worker polls at once). Every
    ``min(interval / 2, 5 s)`` the API's health is probed and :func:`sweep_pool` runs (also
    before each start). A signal is forwarded to the worker, which gets 30 s to stop.
    Returns the worker's last exit code.
    """
    stopping = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)

    def sweep() -> list[str] | None:
        """Sweep the pool; the runs still in flight, or None when the API failed."""
        try:
            result = sweep_pool(pool, interval=interval, bound=bound, check_pids=check_pids)
        except Exception as exc:  # an API blip: the next sweep will do
            logger.warning("pool sweep failed ({}); retrying later", type(exc).__name__)
            return None
        if result["crashed"]:
            logger.warning(
                "marked Crashed {} dead run(s) of pool {}: {}",
                len(result["crashed"]),
                pool,
                ", ".join(result["crashed"]),
            )
        if result["skipped"]:
            logger.warning(
                "skipped {} late scheduled run(s) (backlog of an outage): {}",
                len(result["skipped"]),
                ", ".join(result["skipped"]),
            )
        return result["in_flight"]

    def stop_child(worker: subprocess.Popen[bytes]) -> int:
        worker.terminate()
        try:
            return worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            return worker.wait()

    every = max(1.0, min(interval.total_seconds() / 2, 5.0))
    returncode = 0
    while not stopping.is_set():
        if not _api_healthy(api_url):
            logger.warning("Prefect API {} unreachable; the worker starts when it answers", api_url)
            stopping.wait(restart_delay)
            continue
        sweep()
        child = worker = subprocess.Popen(command)
        logger.info("worker started (pid {}) on pool {}", worker.pid, pool)
        down_since: float | None = None
        restarting = False
        while True:
            try:
                returncode = worker.wait(timeout=every)
                break
            except subprocess.TimeoutExpired:
                pass
            if stopping.is_set():
                returncode = stop_child(worker)
                break
            if not _api_healthy(api_url):
                if down_since is None:
                    down_since = time.monotonic()
                    logger.warning("Prefect API {} unreachable", api_url)
                continue
            in_flight = sweep()
            if down_since is not None:
                outage = time.monotonic() - down_since
                down_since = None
                logger.warning("Prefect API back after {:.0f} s", outage)
                if in_flight == []:
                    # Its back-off would delay the next poll by up to a minute.
                    logger.info("restarting the idle worker so that it polls at once")
                    returncode = stop_child(worker)
                    restarting = True
                    break
        if not stopping.is_set() and not restarting:
            logger.warning(
                "worker exited with code {}; restarting it once the Prefect API answers",
                returncode,
            )
            stopping.wait(restart_delay)
    return returncode


def store_webhook_secret() -> None:
    """Save IAC_DISCORD_WEBHOOK_URL as the configured Secret block (never logged)."""
    settings = get_settings()
    if settings.discord_webhook_url is None:
        logger.info("IAC_DISCORD_WEBHOOK_URL unset: Discord notifications stay off")
        return
    from prefect.blocks.system import Secret

    # Block.save is sync_compatible: it runs synchronously outside an event loop.
    Secret(value=settings.discord_webhook_url.get_secret_value()).save(  # type: ignore[arg-type,unused-coroutine]
        settings.discord_secret_block, overwrite=True
    )
    logger.info("stored the Discord webhook in Secret block {!r}", settings.discord_secret_block)


def _prefect() -> str:
    """The ``prefect`` CLI of this environment (the venv's when not on PATH)."""
    return shutil.which("prefect") or str(Path(sys.executable).parent / "prefect")


def deployment_names(
    pool_type: str, prefect_file: Path = PROJECT_DIR / "prefect.yaml"
) -> list[str]:
    """``flow/deployment`` names in ``prefect_file`` for a pool type.

    The Docker set is the deployments whose name ends in ``-docker``; the process set is
    the rest.

    Raises:
        SystemExit: when the file defines no deployment for ``pool_type``.
    """
    import yaml

    docker = pool_type == "docker"
    names = [
        f"{entry['entrypoint'].rsplit(':', 1)[1]}/{entry['name']}"
        for entry in yaml.safe_load(prefect_file.read_text())["deployments"]
        if entry["name"].endswith(DOCKER_SUFFIX) == docker
    ]
    if not names:
        raise SystemExit(f"{prefect_file} defines no deployment for a {pool_type} pool")
    return names


def deploy(pool: str, pool_type: str, mlflow_tracking_uri: str) -> None:
    """``prefect deploy`` of the pool type's deployments from the project root."""
    env = {
        **os.environ,
        "IAC_PROJECT_DIR": str(PROJECT_DIR),
        "IAC_WORK_POOL": pool,
        "IAC_MLFLOW_TRACKING_URI": mlflow_tracking_uri,
    }
    if pool_type == "docker":
        env = {**DOCKER_DEFAULTS, **{k: v for k, v in env.items() if v}}
    names = [arg for name in deployment_names(pool_type) for arg in ("-n", name)]
    subprocess.run(
        [_prefect(), "--no-prompt", "deploy", *names], cwd=PROJECT_DIR, env=env, check=True
    )


def store_database_url_secret(database_url: str) -> None:
    """Save the project database URL as Secret block ``ia-continu-database-url``.

    Flow containers get it through the Docker deployments' job variables, resolved by
    the worker at run time (the URL holds a password; it is never logged).

    Raises:
        SystemExit: when the URL is SQLite, which containers cannot share safely.
    """
    if database_url.startswith("sqlite"):
        raise SystemExit(
            "IAC_DATABASE_URL must name a database server (postgresql+psycopg://...) for a"
            " Docker work pool: each flow run is a new container"
        )
    from prefect.blocks.system import Secret

    Secret(value=database_url).save(DATABASE_URL_BLOCK, overwrite=True)  # type: ignore[arg-type,unused-coroutine]
    logger.info("stored the database URL in Secret block {!r}", DATABASE_URL_BLOCK)


def ensure_console_token(database_url: str) -> None:
    """Give the console a prediction-API token, written to ``IAC_UI_API_TOKEN_FILE``
    (mode 0600) when that file is named and missing; the token is never printed."""
    path = os.environ.get("IAC_UI_API_TOKEN_FILE")
    if not path or Path(path).exists():
        return
    from ia_continu.auth.tokens import create_token

    engine = get_engine(database_url)
    _, token = create_token(engine, f"console-{secrets.token_hex(3)}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    logger.info("console token created and written to {}", target)


#: Longest head start a Docker worker takes (``--prefetch-seconds``).
PREFETCH_CAP_SECONDS = 15


def prefetch_seconds(pool_type: str, interval_seconds: int) -> int | None:
    """The worker's ``--prefetch-seconds``: how long before its scheduled time a flow run
    is taken, so that its container boots before it is due; None keeps Prefect's 10 s.

    Only a Docker pool gets more: a container's start (5-6 s at load 2 here, 20 s and more
    on a loaded 2-core host) would otherwise eat into the 30 s cycle, where a process pool
    starts in about 3 s. The server holds the move to Running until the scheduled time
    (Prefect 2.20 ``WaitForScheduledTime``), so a run taken early boots, then waits. It
    waits holding a work-pool slot, hence the cap: with ``ingest_labels`` every 10 s on
    the same pool, 15 s of head start keep about 2.4 slots busy (the compose stack gives
    the Docker pool 4, ``IAC_WORK_POOL_CONCURRENCY``).
    """
    if pool_type != "docker":
        return None
    return min(max(interval_seconds - 5, 10), PREFETCH_CAP_SECONDS)


def worker_command(
    prefect: str,
    pool: str,
    pool_type: str,
    *,
    healthcheck: bool,
    interval_seconds: int | None = None,
) -> list[str]:
    """The ``prefect worker start`` command line the supervisor runs.

    ``healthcheck`` adds ``--with-healthcheck`` (the worker's ``/health`` endpoint, which
    the compose healthcheck probes). ``interval_seconds`` (the schedule interval) sets
    ``--prefetch-seconds`` on a Docker pool (:func:`prefetch_seconds`).
    """
    command = [prefect, "worker", "start", "--pool", pool, "--type", pool_type]
    if pool_type == "docker":
        # prefect-docker is in the image; never pip-install at start (air-gapped).
        command += ["--install-policy", "never"]
    prefetch = None if interval_seconds is None else prefetch_seconds(pool_type, interval_seconds)
    if prefetch is not None:
        command += ["--prefetch-seconds", str(prefetch)]
    if healthcheck:
        command.append("--with-healthcheck")
    return command


def run_worker(
    pool: str, pool_type: str, api_url: str, settings: Settings, *, healthcheck: bool = False
) -> int:
    """``prefect worker start`` on ``pool`` under :func:`supervise`; its exit code."""
    command = worker_command(
        _prefect(),
        pool,
        pool_type,
        healthcheck=healthcheck,
        interval_seconds=settings.schedule_interval_seconds,
    )
    interval = timedelta(seconds=settings.schedule_interval_seconds)
    return supervise(
        command,
        api_url=api_url,
        pool=pool,
        interval=interval,
        bound=stale_bound(interval, settings.stale_run_seconds),
        check_pids=pool_type == "process",
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=os.environ.get("IAC_WORK_POOL", "ia-continu-process"))
    parser.add_argument(
        "--type", default="process", choices=("process", "docker"), dest="pool_type"
    )
    parser.add_argument("--worker", action="store_true", help="run a supervised worker afterwards")
    parser.add_argument(
        "--worker-only",
        action="store_true",
        help="skip the bootstrap (done elsewhere): only run the supervised worker",
    )
    parser.add_argument(
        "--with-healthcheck",
        action="store_true",
        help="start the worker with its /health endpoint (compose's healthcheck)",
    )
    args = parser.parse_args(argv)
    settings = settings_or_exit()
    api_url = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").rstrip("/")
    if args.worker_only:
        raise SystemExit(
            run_worker(
                args.pool, args.pool_type, api_url, settings, healthcheck=args.with_healthcheck
            )
        )
    stream_or_exit(settings)  # a stream the loop cannot use fails here, not every 30 s later
    wait_for(f"{api_url}/health", "Prefect server")
    if settings.mlflow_tracking_uri.startswith("http"):
        wait_for(f"{settings.mlflow_tracking_uri.rstrip('/')}/health", "MLflow server")
    migrate(settings.resolved_database_url)  # Alembic upgrade head, once, before any flow
    asyncio.run(
        ensure_prefect_objects(
            args.pool,
            args.pool_type,
            settings.retrain_concurrency_limit,
            settings.work_pool_concurrency,
        )
    )
    store_webhook_secret()
    if args.pool_type == "docker":
        store_database_url_secret(settings.resolved_database_url)
    ensure_console_token(settings.resolved_database_url)
    deploy(args.pool, args.pool_type, settings.mlflow_tracking_uri)
    ui = api_url.removesuffix("/api")
    api_port = os.environ.get("IAC_API_PORT", "8000")
    print(
        f"\n  Prefect UI   {ui}\n  MLflow UI    {settings.mlflow_tracking_uri}\n"
        f"  Predict API  http://127.0.0.1:{api_port}/docs"
        f"  (token: .venv/bin/ia-continu token create <name>)\n"
        f"  Console      http://127.0.0.1:{os.environ.get('IAC_UI_PORT', '8501')}\n"
        f"  Deployments  {deployment_names(args.pool_type)[0]} runs every"
        f" {settings.schedule_interval_seconds} s on pool {args.pool}\n",
        flush=True,
    )
    if args.worker:
        raise SystemExit(
            run_worker(
                args.pool, args.pool_type, api_url, settings, healthcheck=args.with_healthcheck
            )
        )


if __name__ == "__main__":
    main()
