"""Building the project's images with the local engine (dev only: tests and benchmarks)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infra/docker/Dockerfile"


def build_command(
    target: str, tag: str, base_image: str, dockerfile: Path = DOCKERFILE
) -> list[str]:
    """``docker build`` of ``target`` of ``dockerfile`` as ``tag`` from the repository root.

    ``--network host``: this machine's engine has no bridge. Run it with
    ``DOCKER_BUILDKIT=0``: the legacy builder is the one docker-compose 1.29 and
    prefect-docker use, so all three share one layer cache.
    """
    return [
        "docker",
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "-f",
        str(dockerfile),
        "--target",
        target,
        "-t",
        tag,
        str(ROOT),
    ]
