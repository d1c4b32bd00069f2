"""The Docker engine and the images the ``docker``-marked tests build.

``make test`` runs ``infra/scripts/ensure-docker.sh`` first (installs and starts the
engine as root). Without an engine these tests skip, except under ``CI=true``, where a
missing engine is a failure: CI must not pass by skipping them.

The images are built once per session by fixtures, outside pytest's per-test timeout,
each build a bounded phase (``tests/docker/phases.py``): a cold, loaded machine builds
slowly and passes; a build that hangs fails naming the image.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from devkit.images import build_command
from tests.docker.phases import PHASE_TIMINGS, ROOT, TIMINGS_FILE, run_phase

BASE_IMAGE = os.environ.get("IAC_TEST_BASE_IMAGE", "ia-continu/python-base:bookworm")
# The flows image the Docker-pool test deploys; building it first also fills the layer
# cache that `compose build` and the bootstrap's `prefect deploy` build then reuse.
FLOWS_IMAGE = "ia-continu-flows-test:test"
SUBSTITUTES = ("postgres", "prometheus", "pushgateway")
# Legacy builder, as docker-compose 1.29 and prefect-docker (docker-py) use: one layer
# cache shared by every build of the session.
BUILD_ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}
# Bounds per build (seconds). Stall: longest silence of a working build (`uv pip sync`
# of the dependencies prints nothing until it is done: ~2 min cold, quiet machine).
# Limit: several times the slowest cold build measured at load 10 on 2 cores.
BUILD_STALL_S = 900
BUILD_LIMIT_S = 2700


def _engine_up() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session", autouse=True)
def _docker_timings() -> Iterator[None]:
    """Write every phase's duration to test-artifacts/docker-timings.json at the end."""
    yield
    if PHASE_TIMINGS:
        TIMINGS_FILE.parent.mkdir(exist_ok=True)
        TIMINGS_FILE.write_text(json.dumps(PHASE_TIMINGS, indent=2) + "\n")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine answering on the default socket."""
    if _engine_up():
        return
    reason = "no Docker engine (infra/scripts/ensure-docker.sh installs and starts one as root)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def base_image(docker_engine: None) -> str:
    """The image the project's images build FROM: made from Debian's packages, cached.

    No registry is reachable here, so ``python:3.11-slim`` cannot be pulled; the host's
    extra CA certificates go into the build context for the TLS-intercepting proxy.
    debootstrap prints nothing until it is done (~40 s quiet, minutes loaded).
    """
    run_phase("trust host CAs", [str(ROOT / "infra/docker/trust-host-ca.sh")], stall=120, limit=120)
    run_phase(
        "base image",
        [str(ROOT / "infra/docker/base-image.sh"), BASE_IMAGE],
        stall=1200,
        limit=1800,
    )
    return BASE_IMAGE


@pytest.fixture(scope="session")
def flows_image(base_image: str) -> str:
    """The ``flows`` target of infra/docker/Dockerfile, tagged :data:`FLOWS_IMAGE`."""
    run_phase(
        "build flows image",
        build_command("flows", FLOWS_IMAGE, base_image),
        stall=BUILD_STALL_S,
        limit=BUILD_LIMIT_S,
        env=BUILD_ENV,
    )
    return FLOWS_IMAGE


@pytest.fixture(scope="session")
def substitute_images(base_image: str) -> dict[str, str]:
    """Stand-ins for PostgreSQL, Prometheus and the Pushgateway (Debian's packages), by
    service name -> image tag (infra/docker/substitutes/Dockerfile)."""
    images = {}
    for target in SUBSTITUTES:
        tag = f"ia-continu/{target}-debian:bookworm"
        run_phase(
            f"build {target} stand-in image",
            build_command(target, tag, base_image, ROOT / "infra/docker/substitutes/Dockerfile"),
            stall=BUILD_STALL_S,
            limit=BUILD_LIMIT_S,
            env=BUILD_ENV,
        )
        images[target] = tag
    return images
