"""Shared fixtures: every test starts with no IAC_/PREFECT_/MLFLOW_ variables and fresh settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ia_continu.data.storage.migrate import migrate
from ia_continu.settings import Settings, get_settings

# Servers started by tests: no telemetry, no MLflow job runners, no analytics.
for _key, _value in {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_key, _value)

_PREFIXES = ("IAC_", "MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_", "PREFECT_API_URL")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(_PREFIXES):
            monkeypatch.delenv(key, raising=False)
    # A .env in the working directory must not leak into tests.
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a temp dir, synthetic concept-drift source, MLflow in a local SQLite file;
    the project database migrated (as the bootstrap does before any flow)."""
    settings = Settings(
        data_dir=tmp_path / "state",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        data_source="synthetic",
        synthetic_mode="concept_drift",
        batch_size=200,
        synthetic_period_batches=4,
    )
    migrate(settings.resolved_database_url)
    return settings
