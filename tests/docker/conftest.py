"""The Docker engine and the local base image for the ``docker``-marked tests.

``make test`` runs ``infra/scripts/ensure-docker.sh`` first (installs and starts the
engine as root). Without an engine these tests skip, except under ``CI=true``, where a
missing engine is a failure: CI must not pass by skipping them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("IAC_TEST_BASE_IMAGE", "ia-continu/python-base:bookworm")


def _engine_up() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


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
    """
    subprocess.run([str(ROOT / "infra/docker/trust-host-ca.sh")], check=True)
    subprocess.run([str(ROOT / "infra/docker/base-image.sh"), BASE_IMAGE], check=True)
    return BASE_IMAGE
