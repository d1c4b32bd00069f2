"""compose.yaml as Compose itself reads it (`docker-compose config`): healthchecks,
start order, required variables failing loudly, secrets without defaults, .env.example
documenting every variable."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments import bootstrap
from tests.docker.compose_env import (
    COMPOSE_FILE,
    REQUIRED,
    ROOT,
    compose,
    references,
    write_env,
)

pytestmark = pytest.mark.docker

SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "WEBHOOK", "HASH", "KEY")
ONE_SHOT = {"bootstrap", "uptime-kuma-provision"}


@pytest.fixture(scope="module")
def docker_compose() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose missing (infra/scripts/ensure-docker.sh installs it)")


def _required_env() -> dict[str, str]:
    return {
        "POSTGRES_PASSWORD": "0123abcd",
        "GRAFANA_ADMIN_PASSWORD": "grafana-pw",
        "UPTIME_KUMA_ADMIN_PASSWORD": "kuma-password",
        "IAC_UI_PASSWORD_HASH": "scrypt:16384:8:1:c2FsdA==:aGFzaA==",
        "DOCKER_GID": "998",
    }


@pytest.fixture(scope="module")
def config(docker_compose: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = write_env(tmp_path_factory.mktemp("compose") / ".env", _required_env())
    result = compose(env, "config")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def test_the_whole_system_is_in_compose(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {
        "postgres",
        "prefect-server",
        "mlflow",
        "bootstrap",
        "worker",
        "api",
        "ui",
        "prometheus",
        "pushgateway",
        "grafana",
        "uptime-kuma",
        "uptime-kuma-provision",
    }


def test_every_service_has_a_real_healthcheck(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name}: no healthcheck"
        test = check["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and test[1:] not in (["true"], ["exit 0"]), name


def test_start_order_waits_for_health(config: dict[str, Any]) -> None:
    services = config["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert rule["condition"] == expected, (name, dependency, rule)
    assert set(services["bootstrap"]["depends_on"]) == {"prefect-server", "mlflow"}
    assert "postgres" in services["prefect-server"]["depends_on"]
    assert "postgres" in services["mlflow"]["depends_on"]
    for name in ("worker", "api", "ui"):
        assert "bootstrap" in services[name]["depends_on"], name


def test_one_shot_and_long_running_services(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        expected = "no" if name in ONE_SHOT else "unless-stopped"
        assert service["restart"] == expected, name
        assert service["network_mode"] == "host", name


def test_worker_is_a_docker_worker_that_never_installs(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    command = worker["command"]
    # The supervisor (deployments.bootstrap --worker-only) runs `prefect worker start`.
    assert command[:4] == ["python", "-m", "deployments.bootstrap", "--worker-only"]
    assert command[command.index("--type") + 1] == "docker"
    assert "--with-healthcheck" in command
    started = bootstrap.worker_command("prefect", "ia-continu-docker", "docker", healthcheck=True)
    assert started[:3] == ["prefect", "worker", "start"]
    assert started[started.index("--install-policy") + 1] == "never"
    assert "--with-healthcheck" in started
    assert "--prefetch-seconds" not in started  # no interval given: Prefect's 10 s
    assert any(v.startswith("/var/run/docker.sock:") for v in _volumes(worker))
    bootstrap_env = config["services"]["bootstrap"]["environment"]
    assert bootstrap_env["IAC_WORK_POOL_CONCURRENCY"] == "4"  # room for runs taken early
    assert worker["group_add"] == ["998"]


def test_a_docker_worker_takes_runs_early_enough_to_boot_their_container() -> None:
    """Warm start as Prefect 2.20 offers it: the worker takes a run --prefetch-seconds
    before it is due, its container boots, and the server holds Running until its time."""

    def prefetch(pool_type: str, interval: int) -> str | None:
        command = bootstrap.worker_command(
            "prefect", "pool", pool_type, healthcheck=False, interval_seconds=interval
        )
        if "--prefetch-seconds" not in command:
            return None
        return command[command.index("--prefetch-seconds") + 1]

    assert prefetch("docker", 30) == "15"  # capped: a waiting run holds a pool slot
    assert prefetch("docker", 600) == "15"
    assert prefetch("docker", 12) == "10"  # never below Prefect's own 10 s
    assert prefetch("process", 30) is None  # a process starts in ~3 s: Prefect's default


def test_mlflow_uses_postgres_and_serves_artifacts_from_a_volume(config: dict[str, Any]) -> None:
    mlflow = config["services"]["mlflow"]
    assert "--serve-artifacts" in mlflow["command"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    assert mlflow["environment"]["MLFLOW_ARTIFACTS_DESTINATION"] == "/var/lib/mlflow/artifacts"
    assert any(v.startswith("mlflow-artifacts:") for v in _volumes(mlflow))
    prefect = config["services"]["prefect-server"]["environment"]
    assert prefect["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")


def test_config_is_mounted_read_only(config: dict[str, Any]) -> None:
    mounts = {
        name: [v for v in _volumes(s) if v.startswith(str(ROOT))]
        for name, s in config["services"].items()
    }
    for name, binds in mounts.items():
        for bind in binds:
            assert bind.endswith(":ro"), (name, bind)
    assert any("infra/prometheus" in v for v in mounts["prometheus"])
    assert any("infra/grafana/provisioning" in v for v in mounts["grafana"])


@pytest.mark.parametrize("name", REQUIRED)
def test_a_missing_required_variable_fails_loudly(
    docker_compose: None, tmp_path: Path, name: str
) -> None:
    values = _required_env()
    del values[name]
    result = compose(write_env(tmp_path / ".env", values), "config")
    assert result.returncode != 0
    assert name in result.stderr


@pytest.mark.parametrize("name", REQUIRED)
def test_an_empty_required_variable_fails_loudly(
    docker_compose: None, tmp_path: Path, name: str
) -> None:
    result = compose(write_env(tmp_path / ".env", {**_required_env(), name: ""}), "config")
    assert result.returncode != 0
    assert name in result.stderr


def test_no_secret_has_a_default() -> None:
    """A secret is required (`${X:?why}`) or optional and empty (`${X:-}`), never given
    a value in compose.yaml."""
    found = []
    for match in references(COMPOSE_FILE.read_text()):
        name, op, rest = match["name"], match["op"], match["rest"]
        if any(word in name for word in SECRET_WORDS):
            found.append(name)
            assert op == ":?" or (op == ":-" and rest == ""), match.group(0)
    assert {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "IAC_UI_PASSWORD_HASH"} <= set(found)


def test_env_example_documents_every_variable_and_sets_no_secret() -> None:
    used = {m["name"] for m in references(COMPOSE_FILE.read_text())}
    example = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    assert used == set(example), (used - set(example), set(example) - used)
    for key, value in example.items():
        if any(word in key for word in SECRET_WORDS) or key in REQUIRED:
            assert value == "", f".env.example gives {key} a value"


def test_third_party_images_are_pinned(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)


def _volumes(service: dict[str, Any]) -> list[str]:
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            out.append(volume)
        else:
            suffix = ":ro" if volume.get("read_only") else ""
            out.append(f"{volume['source']}:{volume['target']}{suffix}")
    return out
