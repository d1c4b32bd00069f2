"""Console tests: Streamlit AppTest against a real Prefect API (the test harness), a real
MLflow registry in a temp dir and, for the predict page, the real prediction API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from prefect.client.orchestration import get_client
from streamlit.testing.v1 import AppTest

from tests.utils.models import register_version
from tests.utils.servers import prefect_server
from ui import prefect_ops
from ui.settings import get_ui_settings

UI = Path(__file__).parents[2] / "ui"


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server on 127.0.0.1 with the four deployments of prefect.yaml;
    yields its API URL. Pages get it through IAC_UI_PREFECT_API_URL."""
    with prefect_server(tmp_path_factory.mktemp("prefect")) as url:
        prefect_ops.call(_create_deployments, 60, url)
        yield url


@pytest.fixture
def ui_prefect(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Prefect API URL, set for the pages (and a 10 s timeout for a loaded machine)."""
    monkeypatch.setenv("IAC_UI_PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("IAC_UI_TIMEOUT_SECONDS", "10")
    return prefect_api


async def _create_deployments() -> None:
    async with get_client() as client:
        names = [
            *prefect_ops.DEPLOYMENTS.values(),
            *prefect_ops.deployments_for("-docker").values(),
        ]
        for full_name in names:
            flow_name, deployment_name = full_name.split("/")
            flow_id = await client.create_flow_from_name(flow_name)
            await client.create_deployment(flow_id=flow_id, name=deployment_name)


@pytest.fixture(autouse=True)
def _fresh_ui_settings() -> Iterator[None]:
    # Settings and st.cache_data live in the process, across AppTest runs.
    get_ui_settings.cache_clear()
    st.cache_data.clear()
    yield
    get_ui_settings.cache_clear()
    st.cache_data.clear()


def page(name: str) -> str:
    """Path of a page script (``pipeline``, ``model``, ``predict``) or of ``app``."""
    return str(UI / "app.py") if name == "app" else str(UI / "views" / f"{name}.py")


def open_page(name: str, timeout: float = 60) -> AppTest:
    """An AppTest of page ``name`` in a session already logged in (each page checks the
    login itself, ``ui.auth.require_login``); call ``.run()`` on it."""
    app = AppTest.from_file(page(name), default_timeout=timeout)
    app.session_state["authenticated"] = True
    return app


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A registry whose ``champion`` is version 2 and ``previous`` version 1."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    register_version(uri, "ui-model", positions=(0, 1))
    register_version(uri, "ui-model", positions=(6, 7))
    return uri, "ui-model"
