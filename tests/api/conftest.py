"""API fixtures: a real MLflow registry (SQLite + local artifacts) in a temp dir, shared
by the module's tests because training and logging a model takes seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from ia_continu.settings import Settings
from ia_continu.training import registry
from tests.utils.models import register_version


@dataclass(frozen=True)
class Registry:
    """A registry holding a champion: where it is and what version serves."""

    tracking_uri: str
    name: str
    champion: int


@pytest.fixture(scope="session")
def registry_with_champion(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """One registered and promoted Elec2 classifier, shared by the session (read-only)."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    version = register_version(uri, "api-test-model")
    return Registry(uri, "api-test-model", version)


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(tmp_path: Path, registry_with_champion: Registry) -> AppFactory:
    """Build an app on a fresh project database; keyword arguments override ApiSettings,
    ``project`` overrides :class:`Settings` fields."""

    def factory(
        registry: Registry | None = None,
        project: dict[str, object] | None = None,
        **overrides: object,
    ) -> FastAPI:
        registry = registry or registry_with_champion
        api_settings = ApiSettings(
            **{"reload_interval_seconds": 0.5, "token_cache_seconds": 0, **overrides}  # type: ignore[arg-type]
        )
        settings = Settings(
            data_dir=tmp_path / "state",
            mlflow_tracking_uri=registry.tracking_uri,
            registered_model_name=registry.name,
            **(project or {}),  # type: ignore[arg-type]
        )
        return create_app(api_settings, settings)

    return factory


@pytest.fixture
def open_client(make_app: AppFactory) -> Iterator[TestClient]:
    """A client of an app serving the shared champion with auth disabled."""
    with TestClient(make_app(auth="disabled")) as client:
        yield client


def corrupt_model_file(
    tracking_uri: str, name: str, version: int, artifacts_destination: Path | None = None
) -> Path:
    """Overwrite the serialized model of ``name`` ``version`` in the artifact store with junk.

    Args:
        artifacts_destination: the MLflow server's ``--artifacts-destination`` when the
            artifacts are served (``mlflow-artifacts:/`` locations); None for a local
            file store.

    Returns:
        The file overwritten (``model.skops`` / ``model.pkl``).
    """
    client = registry.client(tracking_uri)
    model_id = client.get_model_version(name, str(version)).source.rsplit("/", 1)[-1]
    location = client.get_logged_model(model_id).artifact_location
    if location.startswith("mlflow-artifacts:"):
        assert artifacts_destination is not None, location
        directory = artifacts_destination / location.removeprefix("mlflow-artifacts:").lstrip("/")
    else:
        directory = Path(location.removeprefix("file://"))
    (model_file,) = [p for p in directory.glob("model.*") if p.suffix in (".skops", ".pkl")]
    model_file.write_bytes(b"\x00 not a model \x00" * 64)
    return model_file
