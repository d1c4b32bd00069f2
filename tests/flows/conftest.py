"""Flow tests run against Prefect's test harness (a temporary SQLite-backed API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from ia_continu.data.storage.migrate import migrate
from ia_continu.settings import get_settings


@pytest.fixture(scope="session", autouse=True)
def _prefect_harness() -> Iterator[None]:
    with prefect_test_harness():
        yield


@pytest.fixture
def flow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """IAC_* env for flows: synthetic concept drift, MLflow in a local SQLite file."""
    env = {
        "IAC_DATA_DIR": str(tmp_path / "state"),
        "IAC_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "IAC_DATA_SOURCE": "synthetic",
        "IAC_SYNTHETIC_MODE": "concept_drift",
        "IAC_BATCH_SIZE": "200",
        "IAC_SYNTHETIC_PERIOD_BATCHES": "3",
        "IAC_TRAINING_WINDOW_BATCHES": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    migrate(get_settings().resolved_database_url)  # as the bootstrap does before any flow
    return tmp_path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """mutmut 3.7 (``make mutation``) reads ``Item._nodeid``, which pytest 9 no longer
    has: give it the public node id."""
    for item in items:
        item.__dict__.setdefault("_nodeid", item.nodeid)
