"""compose.yaml brought up for real on this machine: PostgreSQL, Prefect, MLflow, the
bootstrap, a Docker worker, the API, the console, Prometheus and the Pushgateway. The
scheduled `continuous_training` deployment trains a model in a flow-run container, and
the API serves a prediction from it.

No registry is reachable here: the project's images build FROM the Debian-made base
image, and PostgreSQL, Prometheus and the Pushgateway come from stand-in images built
from Debian's packages (infra/docker/substitutes). Grafana and Uptime Kuma have no such
stand-in: they are checked by configuration tests only.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ia_continu.auth.passwords import hash_password
from tests.docker.compose_env import ROOT, compose, compose_command, write_env
from tests.docker.conftest import BUILD_LIMIT_S, BUILD_STALL_S
from tests.docker.phases import (
    PHASE_TIMINGS,
    PhaseError,
    fixtures_outside_test_timeout,
    remove_containers,
    run_phase,
)
from tests.utils.servers import wait_until

# Bounds (seconds), several times what each phase took on this 2-core machine at load 10
# (`compose up` 184 s, first champion 59 s after up): a slow machine waits longer, a
# stuck phase fails naming itself. `compose up` prints nothing while it waits for health
# checks and for the bootstrap to finish: its progress is the containers' states.
UP_STALL_S = 900
UP_LIMIT_S = 1800
HEALTHY_WITHIN_S = 600
CHAMPION_WITHIN_S = 900
BOOTSTRAP_AGAIN_LIMIT_S = 900
# The test function's own backstop, above the sum of its waits' bounds (they fail first).
TEST_TIMEOUT_S = HEALTHY_WITHIN_S + CHAMPION_WITHIN_S + BOOTSTRAP_AGAIN_LIMIT_S + 600

pytestmark = [pytest.mark.docker, fixtures_outside_test_timeout(TEST_TIMEOUT_S)]

SERVICES = [
    "postgres",
    "prefect-server",
    "mlflow",
    "bootstrap",
    "worker",
    "api",
    "ui",
    "pushgateway",
    "prometheus",
]
LONG_RUNNING = [s for s in SERVICES if s != "bootstrap"]
IMAGE_TAG = "compose-test"
LOGS = ROOT / "test-artifacts" / "compose-up.log"  # every service's log, kept for CI


def _service_ports(names: tuple[str, ...]) -> dict[str, str]:
    """Free ports below the ephemeral range: a port picked by binding to 0 is ephemeral,
    and an outgoing connection may take it before the container's server binds it (the
    server then exits with "port already in use" and restarts)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    ports: dict[str, str] = {}
    while len(ports) < len(names):
        port = rng.randrange(max(1024, low - 12_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if str(port) not in ports.values():
            ports[names[len(ports)]] = str(port)
    return ports


@pytest.fixture(scope="module")
def stack(
    base_image: str,
    flows_image: str,  # fills the layer cache that `compose build` reuses
    substitute_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, str, dict[str, str]]]:
    ports = _service_ports(
        (
            "POSTGRES_PORT",
            "PREFECT_PORT",
            "MLFLOW_PORT",
            "API_PORT",
            "UI_PORT",
            "WORKER_HEALTH_PORT",
            "PROMETHEUS_PORT",
            "PUSHGATEWAY_PORT",
        )
    )
    values = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(8),
        "UPTIME_KUMA_ADMIN_PASSWORD": secrets.token_hex(8),
        "IAC_UI_PASSWORD_HASH": hash_password("compose-test-password"),
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "IAC_BASE_IMAGE": base_image,
        "IAC_IMAGE_NAME": "ia-continu-flows",
        "IAC_IMAGE_TAG": IMAGE_TAG,
        "IAC_WORK_POOL": "compose-docker-pool",
        "POSTGRES_IMAGE": substitute_images["postgres"],
        "PROMETHEUS_IMAGE": substitute_images["prometheus"],
        "PUSHGATEWAY_IMAGE": substitute_images["pushgateway"],
        "PREFECT_PUBLIC_URL": f"http://127.0.0.1:{ports['PREFECT_PORT']}",
        "PREFECT_PUBLIC_API_URL": f"http://127.0.0.1:{ports['PREFECT_PORT']}/api",
        **ports,
    }
    env_file = write_env(tmp_path_factory.mktemp("compose-up") / ".env", values)
    project = f"iactest{secrets.token_hex(3)}"
    command, env = compose_command(env_file, project)
    try:
        run_phase(
            "compose build",
            [*command, "build"],
            stall=BUILD_STALL_S,
            limit=BUILD_LIMIT_S,
            env=env,
        )
        try:
            run_phase(
                "compose up",
                [*command, "up", "-d", *SERVICES],
                stall=UP_STALL_S,
                limit=UP_LIMIT_S,
                env=env,
                progress=lambda: _states(project),
            )
        except PhaseError as exc:
            raise PhaseError(f"{exc}\nservice logs:\n{_logs(env_file, project)}") from None
        yield env_file, project, values
    finally:
        _teardown(env_file, project)


def _teardown(env_file: Path, project: str) -> None:
    """Keep every service's log, then remove the stack; bounded, never hangs."""
    LOGS.parent.mkdir(exist_ok=True)
    try:
        logs = compose(env_file, "logs", "--no-color", "--timestamps", project=project)
        LOGS.write_text(logs.stdout)
    except TimeoutError as exc:
        LOGS.write_text(f"{exc}\n")
    started = time.monotonic()
    try:
        # -t 10: each container gets 10 s after SIGTERM, then SIGKILL.
        compose(
            env_file, "down", "-v", "--remove-orphans", "-t", "10", project=project, timeout=300
        )
    except TimeoutError:
        pass  # what is left goes below
    # Flow-run containers belong to no Compose project; a `down` that timed out leaves
    # the project's own.
    remove_containers(
        [f"label=com.docker.compose.project={project}"],
        ["label=io.prefect.flow-run-id", f"ancestor=ia-continu-flows:{IMAGE_TAG}"],
    )
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    # The flow runs' state volume (prefect.yaml job variables) is not a compose volume.
    volumes.append("ia-continu-flow-state")
    subprocess.run(["docker", "volume", "rm", "-f", *volumes], capture_output=True, timeout=120)
    PHASE_TIMINGS["compose down"] = round(time.monotonic() - started, 1)


def _logs(env_file: Path, project: str) -> str:
    try:
        return compose(env_file, "logs", "--no-color", "--tail", "40", project=project).stdout[
            -8000:
        ]
    except TimeoutError as exc:
        return str(exc)


def _states(project: str) -> str:
    """One line per container of ``project``: "service status health" (or why unknown)."""
    try:
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        if not ids:
            return "no containers yet"
        inspected = subprocess.run(
            [
                "docker",
                "inspect",
                "--format",
                '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}}'
                " {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                *ids,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except subprocess.TimeoutExpired:
        return "docker did not answer within 60 s"
    return "\n".join(sorted(line.strip() for line in inspected.splitlines() if line.strip()))


def _state(project: str, service: str) -> dict[str, Any]:
    ids = subprocess.run(
        [
            "docker",
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert ids, f"no container for {service}"
    inspected: dict[str, Any] = json.loads(
        subprocess.run(
            ["docker", "inspect", ids[0]], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    )[0]
    return inspected


def _health(project: str, service: str) -> str:
    state = _state(project, service)["State"]
    if state["Status"] == "exited":
        return f"exited {state['ExitCode']}"
    return str(state["Health"]["Status"] if "Health" in state else state["Status"])


def _flow_runs(prefect: str) -> str:
    """How many flow runs are in each state (e.g. "Completed: 2, Skipped: 1, Running: 1")."""
    try:
        runs = httpx.post(f"{prefect}/flow_runs/filter", json={"limit": 200}, timeout=30).json()
    except httpx.HTTPError as exc:
        return f"Prefect API: {type(exc).__name__}"
    counts: dict[str, int] = {}
    for run in runs:
        name = (run.get("state") or {}).get("name", "?")
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"


def test_compose_stack_serves_a_model_trained_in_a_flow_container(
    stack: tuple[Path, str, dict[str, str]],
) -> None:
    env_file, project, values = stack
    assert _health(project, "bootstrap") == "exited 0"
    started = time.monotonic()

    def all_healthy() -> bool:
        return all(_health(project, s) == "healthy" for s in LONG_RUNNING)

    wait_until(
        all_healthy,
        f"every long-running service healthy ({', '.join(LONG_RUNNING)})",
        HEALTHY_WITHIN_S,
        interval=3,
        describe=lambda: f"{_states(project)}\n{_logs(env_file, project)}",
    )
    PHASE_TIMINGS["services healthy after up"] = round(time.monotonic() - started, 1)

    # Nobody triggers anything: the 30 s schedule of continuous-training-docker runs the
    # loop in flow-run containers until the API has a champion to serve. On a loaded
    # machine a run can take longer than the interval; the pile-up guard then skips the
    # late ones, so this waits for the outcome (a champion), however many runs it takes.
    api = f"http://127.0.0.1:{values['API_PORT']}"
    prefect = f"http://127.0.0.1:{values['PREFECT_PORT']}/api"
    started = time.monotonic()
    wait_until(
        lambda: httpx.get(f"{api}/ready", timeout=30).status_code == 200,
        "the API's /ready to answer 200 (a champion trained by a scheduled flow run)",
        CHAMPION_WITHIN_S,
        interval=3,
        describe=lambda: f"flow runs: {_flow_runs(prefect)}\n{_logs(env_file, project)}",
        ignore=(httpx.HTTPError,),
    )
    PHASE_TIMINGS["first champion served after healthy"] = round(time.monotonic() - started, 1)

    token = compose(
        env_file,
        "exec",
        "-T",
        "api",
        "ia-continu",
        "token",
        "create",
        "compose-test",
        project=project,
        timeout=300,
    )
    assert token.returncode == 0, token.stderr
    bearer = token.stdout.strip().splitlines()[-1]
    row = {
        "day": "2",
        "period": 0.5,
        "nswprice": 0.06,
        "nswdemand": 0.42,
        "vicprice": 0.003,
        "vicdemand": 0.42,
        "transfer": 0.41,
    }
    answer = httpx.post(
        f"{api}/predict", json=row, headers={"Authorization": f"Bearer {bearer}"}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["prediction"] in ("UP", "DOWN")
    model = httpx.get(f"{api}/model", timeout=30).json()
    assert model["version"] == body["model_version"]

    # The model came from a flow run in a container of the Docker pool.
    runs = httpx.post(
        f"{prefect}/flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 50},
        timeout=30,
    ).json()
    pools = {r["work_pool_name"] for r in runs if r["deployment_id"]}
    assert pools == {"compose-docker-pool"}, runs
    assert any(len((r["infrastructure_pid"] or "").rsplit(":", 1)[-1]) == 64 for r in runs)

    ui = httpx.get(f"http://127.0.0.1:{values['UI_PORT']}/_stcore/health", timeout=30)
    assert ui.status_code == 200

    # Flow-run containers pushed their metrics to the stack's Pushgateway.
    pushed = httpx.get(f"http://127.0.0.1:{values['PUSHGATEWAY_PORT']}/metrics", timeout=30).text
    assert (
        'iac_flow_last_success_timestamp_seconds{deployment="continuous_training/'
        'continuous-training-docker",instance="",job="ia-continu"}' in pushed
    ), pushed[-3000:]

    # Nothing crashed and came back on its own along the way.
    restarts = {s: _state(project, s)["RestartCount"] for s in LONG_RUNNING}
    assert set(restarts.values()) == {0}, restarts

    # The bootstrap is idempotent on a PostgreSQL-backed Prefect (`up` re-runs it).
    command, env = compose_command(env_file, project)
    run_phase(
        "compose run bootstrap (again)",
        [*command, "run", "--rm", "bootstrap"],
        stall=BOOTSTRAP_AGAIN_LIMIT_S,
        limit=BOOTSTRAP_AGAIN_LIMIT_S,
        env=env,
    )
