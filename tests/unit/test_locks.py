"""The per-image requirement files: slices of the one resolution, each fit for its app.

``make lock`` resolves everything once (requirements/lock.txt, the dev environment) and
cuts slices from it with the lock as constraints: requirements/core.txt (pyproject's
``dependencies``, the layer the three images share) and one file per image
(requirements/{flows,api,ui}.txt, the ``ia-continu[<image>]`` extra). These tests hold
the promises without the network or a Docker engine:

- every pin of a slice is the lock's pin, so a package has one version everywhere;
- core.txt is part of every image's file (the image installs core, then its own file);
- each file pins what pyproject.toml asks of it (no stale lock);
- the API image carries no Prefect, no MLflow server, no Streamlit; the flows image no
  Streamlit;
- each app's modules import in an interpreter where every distribution its image lacks
  is hidden, as they must in the image.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
IMAGES = ("flows", "api", "ui")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")

# Distributions an image must not hold (canonical names).
FORBIDDEN = {
    "api": {"prefect", "prefect-client", "prefect-docker", "mlflow", "flask", "streamlit"},
    "flows": {"streamlit"},
    "ui": {"mlflow", "flask"},
    "core": {"prefect", "mlflow", "flask", "streamlit"},
}
# What each image runs, imported as it would be (page scripts of ui/views excluded: they
# run their page when imported). Lazy imports the API reaches when it loads a model are
# listed too: an import-time check would miss them.
APP_MODULES = {
    "api": (
        "api.main",
        "api.__main__",
        "ia_continu.serving.champion",
        "mlflow.sklearn",
        "mlflow.artifacts",
        "skops.io",
        "onnxruntime",
        "skl2onnx",
        "uvloop",
        "httptools",
    ),
    "flows": (
        "flows.continuous_training",
        "flows.generate",
        "flows.detect_drift",
        "flows.retrain",
        "flows.notify",
        "flows.ingest_labels",
        "deployments.bootstrap",
        "deployments.uptime_kuma",
        "mlflow.server",
    ),
    "ui": ("ui.prefect_ops", "ui.registry_view", "ui.auth", "ui.api_client", "ui.settings"),
}
# In every image's venv without being pinned: the venv's own tools and the project.
ALWAYS_PRESENT = {"pip", "setuptools", "wheel", "uv", "ia-continu"}


def pins(path: Path) -> dict[NormalizedName, str]:
    """``name -> version`` of every ``name==version`` line of a compiled requirements file."""
    found: dict[NormalizedName, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    assert found, f"{path}: no pinned requirement (run `make lock`)"
    return found


def direct_requirements(image: str) -> list[Requirement]:
    """pyproject.toml's core dependencies plus the image's extra (none for ``core``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra = [] if image == "core" else project["optional-dependencies"][image]
    return [Requirement(spec) for spec in project["dependencies"] + extra]


@pytest.mark.parametrize("image", IMAGES)
def test_core_is_part_of_every_image(image: str) -> None:
    core = pins(REQUIREMENTS / "core.txt")
    own = pins(REQUIREMENTS / f"{image}.txt")
    assert {name: v for name, v in core.items() if own.get(name) != v} == {}


@pytest.mark.parametrize("image", ("core", *IMAGES))
def test_every_image_pin_is_the_locks_pin(image: str) -> None:
    lock = pins(REQUIREMENTS / "lock.txt")
    own = pins(REQUIREMENTS / f"{image}.txt")
    differ = {
        name: (version, lock.get(name))
        for name, version in own.items()
        if lock.get(name) != version
    }
    assert not differ, f"{image}.txt vs lock.txt (name: image, lock): {differ}"


def test_a_package_shared_by_two_images_has_one_version() -> None:
    by_image = {image: pins(REQUIREMENTS / f"{image}.txt") for image in IMAGES}
    versions: dict[str, set[str]] = {}
    for image_pins in by_image.values():
        for name, version in image_pins.items():
            versions.setdefault(name, set()).add(version)
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}


@pytest.mark.parametrize("image", ("core", *IMAGES))
def test_image_file_pins_what_pyproject_asks(image: str) -> None:
    own = pins(REQUIREMENTS / f"{image}.txt")
    wrong = {
        str(req): own.get(canonicalize_name(req.name))
        for req in direct_requirements(image)
        if canonicalize_name(req.name) != "ia-continu"
        and not req.specifier.contains(own.get(canonicalize_name(req.name), "0.dev0"), True)
    }
    assert not wrong, f"requirements/{image}.txt is stale (run `make lock`): {wrong}"


# The dev and bench extras' tools: in lock.txt only, never in an image.
DEV_TOOLS = {"pytest", "ruff", "mypy", "playwright", "schemathesis", "mutmut", "evidently", "river"}


@pytest.mark.parametrize("image", ("core", *IMAGES))
def test_image_lacks_what_it_must_not_carry(image: str) -> None:
    own = pins(REQUIREMENTS / f"{image}.txt")
    assert sorted((FORBIDDEN.get(image, set()) | DEV_TOOLS) & own.keys()) == []


def test_api_uses_the_mlflow_client_at_the_servers_version() -> None:
    lock = pins(REQUIREMENTS / "lock.txt")
    api = pins(REQUIREMENTS / "api.txt")
    assert api[canonicalize_name("mlflow-skinny")] == lock[canonicalize_name("mlflow")]


def test_each_image_installs_core_then_its_own_file() -> None:
    dockerfile = (ROOT / "infra/docker/Dockerfile").read_text(encoding="utf-8")
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)
    for image in ("core", *IMAGES):
        (stage,) = [s for s in stages if re.match(rf"\S+ AS {image}\s", s)]
        assert f"COPY requirements/{image}.txt " in stage, f"target {image}"
        if image != "core":
            assert stage.startswith("core AS "), f"target {image} is not built FROM core"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    missing = [f for f in ("core", *IMAGES) if f"!requirements/{f}.txt" not in ignored]
    assert not missing, f".dockerignore keeps these out of the build context: {missing}"


@pytest.mark.parametrize("image", IMAGES)
def test_app_imports_without_the_distributions_its_image_lacks(image: str) -> None:
    """A fresh interpreter hides every top-level module whose distributions are all absent
    from ``requirements/<image>.txt``, then imports what the image runs."""
    allowed = sorted(set(pins(REQUIREMENTS / f"{image}.txt")) | ALWAYS_PRESENT)
    code = f"""
import importlib, importlib.abc, importlib.metadata, json, sys
from packaging.utils import canonicalize_name
allowed = set({allowed!r})
hidden = {{
    module
    for module, dists in importlib.metadata.packages_distributions().items()
    if not any(canonicalize_name(d) in allowed for d in dists)
}}

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the image)", name=name)
        return None

sys.meta_path.insert(0, Hide())
for name in {list(APP_MODULES[image])!r}:
    importlib.import_module(name)
print(json.dumps(sorted(hidden & {{m.partition(".")[0] for m in sys.modules}})))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
