"""prefect.yaml: one definition per flow, deployed to a process pool or to a Docker pool
(YAML anchors). The images' locks are checked in test_locks.py."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.bootstrap import DOCKER_SUFFIX, deployment_names

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deployments() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load((ROOT / "prefect.yaml").read_text())[
        "deployments"
    ]
    return loaded


def test_each_flow_has_one_process_and_one_docker_deployment(
    deployments: list[dict[str, Any]],
) -> None:
    process = {d["entrypoint"]: d for d in deployments if not d["name"].endswith(DOCKER_SUFFIX)}
    docker = {d["entrypoint"]: d for d in deployments if d["name"].endswith(DOCKER_SUFFIX)}
    assert set(process) == set(docker) and len(process) == 6
    for entrypoint, local in process.items():
        remote = docker[entrypoint]
        assert remote["name"] == local["name"] + DOCKER_SUFFIX
        # Same definition (anchors), only the pool, build and pull differ.
        shared = {k: v for k, v in local.items() if k not in ("name", "work_pool")}
        assert {k: remote[k] for k in shared} == shared
        assert "build" not in local and "pull" not in local  # top-level: no build, local dir


def test_docker_deployments_build_a_local_image_and_never_pull(
    deployments: list[dict[str, Any]],
) -> None:
    for deployment in (d for d in deployments if d["name"].endswith(DOCKER_SUFFIX)):
        (step,) = deployment["build"]
        build = step["prefect_docker.deployments.steps.build_docker_image"]
        assert build["id"] == "build-image"
        assert build["requires"].startswith("prefect-docker>=0.5")
        assert build["dockerfile"] == "infra/docker/Dockerfile" and build["target"] == "flows"
        assert build["pull"] is False  # no registry: the base image is local
        assert "{{ $IAC_IMAGE_NAME }}" == build["image_name"]
        assert "{{ $IAC_IMAGE_TAG }}" == build["tag"]
        variables = deployment["work_pool"]["job_variables"]
        assert variables["image"] == "{{ build-image.image }}"
        assert variables["image_pull_policy"] == "Never"
        assert variables["auto_remove"] is True
        # The Discord outbox (IAC_DATA_DIR) must outlive each auto-removed container.
        assert variables["volumes"] == ["ia-continu-flow-state:/var/lib/ia-continu"]
        # The database password is resolved by the worker from a Secret block.
        assert "prefect.blocks.secret" in variables["env"]["IAC_DATABASE_URL"]
        (pull,) = deployment["pull"]
        assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == (
            "/opt/ia-continu"
        )
    top = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert top["build"] is None and top["push"] is None


def test_only_the_loop_and_label_ingestion_are_scheduled(
    deployments: list[dict[str, Any]],
) -> None:
    intervals = {
        d["name"]: [s["interval"] for s in d["schedules"]]
        for d in deployments
        if d.get("schedules")
    }
    assert intervals == {
        "continuous-training": [30],
        "continuous-training-docker": [30],
        "ingest-labels": [10],
        "ingest-labels-docker": [10],
    }


def test_bootstrap_picks_one_set_by_pool_type() -> None:
    process, docker = deployment_names("process"), deployment_names("docker")
    assert "continuous_training/continuous-training" in process
    assert "continuous_training/continuous-training-docker" in docker
    assert not set(process) & set(docker)
    assert "ingest_labels/ingest-labels" in process
    assert "ingest_labels/ingest-labels-docker" in docker
    assert len(process) == len(docker) == 6


def test_bootstrap_refuses_a_sqlite_database_for_a_docker_pool() -> None:
    from deployments.bootstrap import store_database_url_secret

    with pytest.raises(SystemExit, match="IAC_DATABASE_URL must name a database server"):
        store_database_url_secret("sqlite:////tmp/iac.db")


def test_the_demo_worker_is_supervised() -> None:
    """`make demo` runs the worker through the bootstrap's supervisor (restart after a
    Prefect outage, dead runs marked Crashed, late backlog skipped), not bare."""
    procfile = (ROOT / "infra/local/Procfile").read_text().splitlines()
    (worker,) = [line for line in procfile if line.startswith("worker:")]
    assert "python -m deployments.bootstrap --worker" in worker
    assert "prefect worker start" not in worker


def test_mutation_testing_targets_the_guard_and_the_retry_policy() -> None:
    mutmut = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert {"flows/guards.py", "flows/retries.py"} <= set(mutmut["only_mutate"])
    # Only the fast tests that call these modules directly: a few minutes in all.
    assert "tests/flows/test_guards.py" in mutmut["pytest_add_cli_args_test_selection"]
    assert "mutation:" in (ROOT / "Makefile").read_text()
