"""Predict page against the real prediction API (token auth), CSV batches through the API
client, and the login gate of the console."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from api.main import create_app
from api.settings import ApiSettings
from ia_continu.auth.passwords import hash_password
from ia_continu.auth.tokens import create_token
from ia_continu.data.storage.migrate import migrate
from ia_continu.settings import Settings
from tests.ui.conftest import open_page, page
from tests.utils.live_api import serve_in_thread
from tests.utils.models import elec2_rows
from tests.utils.servers import free_port
from ui import api_client
from ui.settings import UiSettings

TIMEOUT = 60


@pytest.fixture(scope="module")
def live_api(
    two_versions: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(base URL, token) of the prediction API serving the champion, auth on."""
    uri, name = two_versions
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("api"), mlflow_tracking_uri=uri, registered_model_name=name
    )
    _, token = create_token(migrate(settings.resolved_database_url), "console")
    with serve_in_thread(create_app(ApiSettings(), settings)) as url:
        yield url, token


@pytest.fixture
def ui_api(live_api: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    url, token = live_api
    monkeypatch.setenv("IAC_UI_API_URL", url)
    monkeypatch.setenv("IAC_UI_API_TOKEN", token)
    monkeypatch.setenv("IAC_UI_TIMEOUT_SECONDS", "10")
    return url, token


@pytest.mark.usefixtures("ui_api")
def test_form_built_from_the_signature_predicts() -> None:
    app = open_page("predict", TIMEOUT).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    labels = {n.label for n in app.number_input} | {t.label for t in app.text_input}
    assert labels == {"day", "period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"}
    row = elec2_rows(1)[0]
    for widget in app.number_input:
        widget.set_value(row[widget.label])
    app.text_input[0].input(row["day"])
    app.button[0].click().run()
    assert not app.error, [e.value for e in app.error]
    assert "Prediction: **" in app.success[0].value and "model version 2" in app.success[0].value


def test_csv_batches_go_through_the_api_in_chunks(ui_api: tuple[str, str]) -> None:
    url, token = ui_api
    settings = UiSettings(api_url=url, api_token=token, timeout_seconds=10)
    frame = pd.DataFrame(elec2_rows(25)).astype(object)
    result = api_client.predict_frame(settings, frame, chunk_rows=10)
    assert len(result) == 25 and set(result["prediction"]) <= {"UP", "DOWN"}
    assert result["model_version"].eq(2).all()
    bad = frame.assign(nswprice="expensive")
    with pytest.raises(api_client.ApiError, match=r"rows\.0\.nswprice"):
        api_client.predict_frame(settings, bad)


def test_wrong_token_and_api_down_are_messages(
    ui_api: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAC_UI_API_TOKEN", "iac_00000000_" + "x" * 43)
    app = open_page("predict", TIMEOUT).run()
    assert not app.exception and not app.error  # /model is open: the form shows
    app.button[0].click().run()
    assert not app.exception
    assert "refused the token" in app.error[0].value
    monkeypatch.setenv("IAC_UI_API_URL", f"http://127.0.0.1:{free_port()}")
    from ui.settings import get_ui_settings

    get_ui_settings.cache_clear()
    app = open_page("predict", TIMEOUT).run()
    assert "unreachable" in app.error[0].value


def test_login_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    password = "operator-" + tmp_path.name  # made up at run time, never stored
    monkeypatch.setenv("IAC_UI_PASSWORD_HASH", hash_password(password))
    monkeypatch.setenv("IAC_UI_PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("IAC_UI_TIMEOUT_SECONDS", "1")
    app = AppTest.from_file(page("app"), default_timeout=TIMEOUT).run()
    assert [s.value for s in app.subheader] == []  # nothing but the form
    app.text_input[0].input("wrong password")
    app.button[0].click().run()
    assert app.error[0].value == "Wrong password."
    app.text_input[0].input(password)
    app.button[0].click().run()
    assert not app.exception
    assert "Start a flow run" in [s.value for s in app.subheader]


def test_no_password_configured_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    app = AppTest.from_file(page("app"), default_timeout=TIMEOUT).run()
    assert "IAC_UI_PASSWORD_HASH" in app.error[0].value
