"""Size of the three images (flows, api, ui), each with only its extra's dependencies.

Reads ``ia-continu-<target>:<tag>`` from the local Docker engine (``--build`` builds them
first from ``infra/docker/Dockerfile``, FROM ``--base-image``, as the Docker tests do) and
reports, per image: its size (``docker image inspect``'s ``Size``, bytes), its two
dependency layers (``docker history``: core, shared by the three, then its own), and the
packages pinned in ``requirements/<target>.txt``; then what the three images take on one
engine (shared layers counted once); beside them the sizes measured before the split
(issue 14).

    python -m bench.image_sizes [--build] [--tag bench] [--base-image IMAGE]

Writes ``bench/results/image_sizes.json``. Needs a Docker engine
(``infra/scripts/ensure-docker.sh``) and, with ``--build``, the base image
(``infra/docker/base-image.sh``) and the package index.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._common import RESULTS_DIR, markdown_table, write_json
from devkit.images import build_command

ROOT = Path(__file__).resolve().parents[1]
RESULTS = RESULTS_DIR / "image_sizes.json"
TARGETS = ("flows", "api", "ui")
# Measured on 29 Nov 2026 with the Dockerfile before the split (one dependency layer, all
# of pyproject's dependencies, shared by the three targets; same base image): the three
# images were the same size.
BEFORE_BYTES = {"flows": 1_367_058_811, "api": 1_367_058_811, "ui": 1_367_058_811}
BEFORE_PACKAGES = 175  # pins of the former requirements/runtime.txt


class DockerError(RuntimeError):
    """The Docker engine is missing, or refused a command (message says which)."""


def docker(*args: str, env: dict[str, str] | None = None) -> str:
    """Run ``docker args...`` and return its stdout.

    Raises:
        DockerError: no ``docker`` binary, or the command failed (its stderr's tail).
    """
    try:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, check=False, env=env
        )
    except FileNotFoundError:
        raise DockerError("no docker command: run infra/scripts/ensure-docker.sh") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise DockerError(f"docker {' '.join(args[:2])} failed:\n{tail}")
    return done.stdout


def build(target: str, tag: str, base_image: str) -> None:
    """Build ``target`` of infra/docker/Dockerfile as ``ia-continu-<target>:<tag>``.

    The legacy builder, as docker-compose 1.29 and prefect-docker use (same layer cache).

    Raises:
        DockerError: the build failed.
    """
    docker(
        *build_command(target, image_name(target, tag), base_image)[1:],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )


def image_name(target: str, tag: str) -> str:
    """``ia-continu-<target>:<tag>``, the names compose.yaml gives the images."""
    return f"ia-continu-{target}:{tag}"


def pinned_packages(target: str) -> int:
    """Number of ``name==version`` lines in ``requirements/<target>.txt``."""
    text = (ROOT / "requirements" / f"{target}.txt").read_text(encoding="utf-8")
    return len(re.findall(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", text, flags=re.MULTILINE))


def measure(target: str, tag: str) -> dict[str, Any]:
    """Sizes (bytes) of one image and of its layers, and its package count.

    ``shared_bytes`` is what the three images have in common (base image, venv, core
    dependencies: every layer up to the first ``uv pip sync``); ``core_layer_bytes`` and
    ``own_layer_bytes`` the two dependency layers (core, then the image's own packages).

    Raises:
        DockerError: the image is not in the engine (build it, or pass ``--build``).
    """
    name = image_name(target, tag)
    size = int(docker("image", "inspect", "-f", "{{.Size}}", name).strip())
    history = docker("history", "--no-trunc", "--human=false", "--format", "{{json .}}", name)
    # Newest layer first; sizes sum to the image's size.
    layers = [json.loads(line) for line in history.splitlines() if line.strip()]
    syncs = [i for i, layer in enumerate(layers) if "uv pip sync" in layer["CreatedBy"]]
    if len(syncs) != 2:
        raise DockerError(f"{name}: expected 2 `uv pip sync` layers (core, own), not {len(syncs)}")
    own, core = syncs
    return {
        "image": name,
        "bytes": size,
        "shared_bytes": sum(int(layer["Size"]) for layer in layers[core:]),
        "core_layer_bytes": int(layers[core]["Size"]),
        "own_layer_bytes": int(layers[own]["Size"]),
        "packages": pinned_packages(target),
        "before_bytes": BEFORE_BYTES[target],
        "saved_bytes": BEFORE_BYTES[target] - size,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure (optionally build) the three images; print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--build", action="store_true", help="build the three targets first")
    parser.add_argument("--tag", default="bench", help="image tag (default: bench)")
    parser.add_argument("--base-image", default="ia-continu/python-base:bookworm")
    args = parser.parse_args(argv)
    try:
        if args.build:
            for target in TARGETS:
                print(f"building {image_name(target, args.tag)}", flush=True)
                build(target, args.tag, args.base_image)
        images = {target: measure(target, args.tag) for target in TARGETS}
        base = int(docker("image", "inspect", "-f", "{{.Size}}", args.base_image).strip())
    except DockerError as exc:
        print(f"image_sizes: {exc}", file=sys.stderr)
        return 1
    shared = images[TARGETS[0]]["shared_bytes"]
    on_disk = shared + sum(m["bytes"] - m["shared_bytes"] for m in images.values())
    rows = [
        [
            target,
            f"{m['before_bytes'] / 1e6:,.0f}",
            f"{m['bytes'] / 1e6:,.0f}",
            f"{m['saved_bytes'] / 1e6:,.0f} ({m['saved_bytes'] / m['before_bytes']:.0%})",
            f"{m['own_layer_bytes'] / 1e6:,.0f}",
            f"{BEFORE_PACKAGES} → {m['packages']}",
        ]
        for target, m in images.items()
    ]
    header = ["image", "before MB", "after MB", "saved MB", "own deps layer MB", "packages"]
    print(markdown_table(header, rows))
    print(
        f"\nshared by the three (base {base / 1e6:,.0f} MB, venv, core dependencies): "
        f"{shared / 1e6:,.0f} MB; the three images on one engine: {on_disk / 1e6:,.0f} MB "
        f"(before: {max(BEFORE_BYTES.values()) / 1e6:,.0f} MB, one layer shared by all)"
    )
    write_json(
        RESULTS,
        {
            "images": images,
            "base_image": {"name": args.base_image, "bytes": base},
            "shared_bytes": shared,
            "three_images_on_disk_bytes": on_disk,
            "before": {
                "bytes": BEFORE_BYTES,
                "packages": BEFORE_PACKAGES,
                "note": "one dependency layer shared by the three targets, 29 Nov 2026",
            },
        },
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
