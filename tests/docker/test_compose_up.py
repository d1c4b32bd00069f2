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

from ia_continu.passwords import hash_password
from tests.docker.compose_env import ROOT, compose, write_env

pytestmark = pytest.mark.docker

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
TIMINGS = ROOT / "test-artifacts" / "compose-up-timings.json"
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


def _build_substitute(target: str, base_image: str) -> str:
    tag = f"ia-continu/{target}-debian:bookworm"
    subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "--network",
            "host",
            "--build-arg",
            f"BASE_IMAGE={base_image}",
            "-f",
            str(ROOT / "infra/docker/substitutes/Dockerfile"),
            "--target",
            target,
            "-t",
            tag,
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        timeout=900,
    )
    return tag


@pytest.fixture(scope="module")
def stack(
    base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, dict[str, str], dict[str, float]]]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    substitutes = {
        t: _build_substitute(t, base_image)
        for t in SERVICES
        if t in ("postgres", "prometheus", "pushgateway")
    }
    timings["substitute_images_s"] = round(time.monotonic() - started, 1)
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
        "IAC_IMAGE_TAG": "compose-test",
        "IAC_WORK_POOL": "compose-docker-pool",
        "POSTGRES_IMAGE": substitutes["postgres"],
        "PROMETHEUS_IMAGE": substitutes["prometheus"],
        "PUSHGATEWAY_IMAGE": substitutes["pushgateway"],
        "PREFECT_PUBLIC_URL": f"http://127.0.0.1:{ports['PREFECT_PORT']}",
        "PREFECT_PUBLIC_API_URL": f"http://127.0.0.1:{ports['PREFECT_PORT']}/api",
        **ports,
    }
    env_file = write_env(tmp_path_factory.mktemp("compose-up") / ".env", values)
    project = f"iactest{secrets.token_hex(3)}"
    try:
        started = time.monotonic()
        built = compose(env_file, "build", project=project, timeout=1200)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        timings["compose_build_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        up = compose(env_file, "up", "-d", *SERVICES, project=project, timeout=900)
        assert up.returncode == 0, up.stderr[-4000:] + _logs(env_file, project)
        timings["compose_up_s"] = round(time.monotonic() - started, 1)
        yield env_file, project, values, timings
    finally:
        logs = compose(env_file, "logs", "--no-color", "--timestamps", project=project)
        LOGS.parent.mkdir(exist_ok=True)
        LOGS.write_text(logs.stdout)
        compose(env_file, "down", "-v", "--remove-orphans", project=project, timeout=300)


def _logs(env_file: Path, project: str) -> str:
    return compose(env_file, "logs", "--no-color", "--tail", "40", project=project).stdout[-8000:]


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
    ).stdout.split()
    assert ids, f"no container for {service}"
    inspected: dict[str, Any] = json.loads(
        subprocess.run(
            ["docker", "inspect", ids[0]], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    return inspected


def _health(project: str, service: str) -> str:
    state = _state(project, service)["State"]
    if state["Status"] == "exited":
        return f"exited {state['ExitCode']}"
    return str(state["Health"]["Status"] if "Health" in state else state["Status"])


def test_compose_stack_serves_a_model_trained_in_a_flow_container(
    stack: tuple[Path, str, dict[str, str], dict[str, float]],
) -> None:
    env_file, project, values, timings = stack
    assert _health(project, "bootstrap") == "exited 0"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = {s: _health(project, s) for s in LONG_RUNNING}
        if all(state == "healthy" for state in states.values()):
            break
        time.sleep(3)
    assert all(state == "healthy" for state in states.values()), (states, _logs(env_file, project))

    # Nobody triggers anything: the 30 s schedule of continuous-training-docker runs the
    # loop in flow-run containers until the API has a champion to serve.
    api = f"http://127.0.0.1:{values['API_PORT']}"
    started = time.monotonic()
    deadline = started + 300
    ready = None
    while time.monotonic() < deadline:
        ready = httpx.get(f"{api}/ready", timeout=5)
        if ready.status_code == 200:
            break
        time.sleep(3)
    assert ready is not None and ready.status_code == 200, _logs(env_file, project)
    timings["first_champion_served_after_up_s"] = round(time.monotonic() - started, 1)

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
        f"{api}/predict", json=row, headers={"Authorization": f"Bearer {bearer}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["prediction"] in ("UP", "DOWN")
    model = httpx.get(f"{api}/model", timeout=5).json()
    assert model["version"] == body["model_version"]

    # The model came from a flow run in a container of the Docker pool.
    prefect = f"http://127.0.0.1:{values['PREFECT_PORT']}/api"
    runs = httpx.post(
        f"{prefect}/flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 50},
        timeout=10,
    ).json()
    pools = {r["work_pool_name"] for r in runs if r["deployment_id"]}
    assert pools == {"compose-docker-pool"}, runs
    assert any(len((r["infrastructure_pid"] or "").rsplit(":", 1)[-1]) == 64 for r in runs)

    ui = httpx.get(f"http://127.0.0.1:{values['UI_PORT']}/_stcore/health", timeout=5)
    assert ui.status_code == 200

    # Flow-run containers pushed their metrics to the stack's Pushgateway.
    pushed = httpx.get(f"http://127.0.0.1:{values['PUSHGATEWAY_PORT']}/metrics", timeout=5).text
    assert (
        'iac_flow_last_success_timestamp_seconds{deployment="continuous_training/'
        'continuous-training-docker",instance="",job="ia-continu"}' in pushed
    ), pushed[-3000:]

    # Nothing crashed and came back on its own along the way.
    restarts = {s: _state(project, s)["RestartCount"] for s in LONG_RUNNING}
    assert set(restarts.values()) == {0}, restarts

    # The bootstrap is idempotent on a PostgreSQL-backed Prefect (`up` re-runs it).
    again = compose(env_file, "run", "--rm", "bootstrap", project=project, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    TIMINGS.parent.mkdir(exist_ok=True)
    TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")
