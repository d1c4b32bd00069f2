"""The console's gate, in the Streamlit test harness: every page script shows the login
form and nothing else without a logged-in session; a bad setting is one line naming the
variable, never a traceback; Streamlit's production settings travel with ``ui/app.py``.
(The browser tests prove the same on a real server, URL by URL.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger
from pydantic import ValidationError
from streamlit.testing.v1 import AppTest

from ia_continu.auth.passwords import hash_password, verify_password
from tests.ui.conftest import UI
from tests.utils.servers import free_port
from ui.settings import UiSettings, invalid_settings_message

ROOT = UI.parent
TIMEOUT = 60
# Every script the console can run: the entry point and each page it registers.
SCRIPTS = ["app.py", *sorted(f"views/{p.name}" for p in (UI / "views").glob("*.py"))]


@pytest.fixture
def dead_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect and the API on closed ports: a page that slipped past the gate would still
    draw its title, buttons and error boxes."""
    monkeypatch.setenv("IAC_UI_PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("IAC_UI_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("IAC_UI_TIMEOUT_SECONDS", "1")


def test_no_pages_directory_beside_the_entry_script() -> None:
    # With ui/pages/ present, Streamlit serves /pipeline, /model, /predict straight from
    # it (legacy multipage mode) until the first st.navigation call in the process.
    assert not (UI / "pages").exists()
    assert SCRIPTS == ["app.py", "views/model.py", "views/pipeline.py", "views/predict.py"]


@pytest.mark.usefixtures("dead_backends")
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_shows_only_the_login_form(
    script: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    password = "operator-" + tmp_path.name
    monkeypatch.setenv("IAC_UI_PASSWORD_HASH", hash_password(password))
    app = AppTest.from_file(str(UI / script), default_timeout=TIMEOUT).run()
    assert not app.exception, [e.value for e in app.exception]
    assert [t.value for t in app.title] == ["IA Continu"]
    assert [t.label for t in app.text_input] == ["Operator password"]
    assert [b.label for b in app.button] == ["Log in"]
    assert not app.subheader and not app.checkbox and not app.number_input and not app.error
    # The same script, once logged in through the form, draws its page.
    app.text_input[0].input(password)
    app.button[0].click().run()
    assert "IA Continu" not in [t.value for t in app.title]


@pytest.mark.usefixtures("dead_backends")
def test_a_wrong_password_is_logged_without_what_was_typed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IAC_UI_PASSWORD_HASH", hash_password("operator-" + tmp_path.name))
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        app = AppTest.from_file(str(UI / "app.py"), default_timeout=TIMEOUT).run()
        app.text_input[0].input("guess-123456")
        app.button[0].click().run()
    finally:
        logger.remove(sink)
    assert app.error[0].value == "Wrong password."
    assert any("console login refused" in line for line in lines), lines
    assert not any("guess-123456" in line for line in lines)


BAD_SETTINGS = [
    ("IAC_UI_PASSWORD_HASH", "not-a-hash-at-all"),
    # Passed the old "starts with scrypt:" check, yet no password could ever match it.
    ("IAC_UI_PASSWORD_HASH", "scrypt:16384:8:1:c2FsdHNhbHQ=:"),
    ("IAC_UI_AUTH", "none"),
    ("IAC_UI_TIMEOUT_SECONDS", "-1"),
    ("IAC_BATCH_SIZE", "many"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_SETTINGS)
@pytest.mark.parametrize("script", ["app.py", "views/model.py"])
def test_a_bad_setting_is_one_line_naming_it(
    script: str, variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    app = AppTest.from_file(str(UI / script), default_timeout=TIMEOUT)
    app.session_state["authenticated"] = True  # the settings are read before and after login
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(app.error) == 1 and not app.text_input  # no login form, no page
    message = app.error[0].value
    assert message.startswith("Invalid console setting: ") and variable in message
    assert "\n" not in message and value not in message  # the value may be a secret
    assert "Traceback" not in message and ".py" not in message and "pydantic" not in message


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("bcrypt:16384:8:1:c2FsdA==:" + "A" * 44, "not a hash from `ia-continu ui-password`"),
        ("scrypt:16384:8:c2FsdA==:" + "A" * 44, "not a hash from"),
        ("scrypt:16384:eight:1:c2FsdA==:" + "A" * 44, "must be integers"),
        ("scrypt:1000:8:1:c2FsdA==:" + "A" * 44, "out of range"),  # n not a power of 2
        ("scrypt:16384:8:999:c2FsdA==:" + "A" * 44, "out of range"),  # minutes per login
        ("scrypt:1048576:8:1:c2FsdA==:" + "A" * 44, "out of range"),  # 1 GiB per login
        ("scrypt:16384:8:1:c2FsdA=:" + "A" * 44, "not URL-safe base64"),
        ("scrypt:16384:8:1::" + "A" * 44, "too short"),
    ],
)
def test_a_malformed_password_hash_is_refused_at_load(encoded: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UiSettings(password_hash=encoded)
    message = invalid_settings_message(caught.value, "IAC_UI_")
    assert message.startswith("IAC_UI_PASSWORD_HASH: ") and reason in message
    assert encoded not in message
    assert not verify_password("any password", encoded)


def test_a_good_hash_loads_even_with_a_trailing_newline() -> None:
    encoded = hash_password("operator-password") + "\n"  # read from a file
    settings = UiSettings(password_hash=encoded)
    assert settings.password_hash is not None
    assert verify_password("operator-password", settings.password_hash.get_secret_value())


def test_streamlit_production_settings_travel_with_the_script(tmp_path: Path) -> None:
    """`streamlit run ui/app.py` from any directory reads ui/.streamlit/config.toml: no
    traceback on the page, no developer toolbar. Resolved here the way `streamlit run`
    does it (main script path, then the config files), in a child process so this one
    keeps its defaults."""
    probe = (
        "import json, sys\n"
        "from streamlit import config\n"
        "config._main_script_path = sys.argv[1]\n"
        "config.get_config_options(force_reparse=True)\n"
        "keys = ['client.showErrorDetails', 'client.toolbarMode', 'server.headless',"
        " 'browser.gatherUsageStats']\n"
        "print(json.dumps({k: [config.get_option(k), config.get_where_defined(k)]"
        " for k in keys}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(UI / "app.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    options = json.loads(out.strip().splitlines()[-1])
    owner = str(UI / ".streamlit" / "config.toml")
    assert options["client.showErrorDetails"] == ["none", owner]
    assert options["client.toolbarMode"] in (["minimal", owner], ["viewer", owner])
    assert options["server.headless"] == [True, owner]
    assert options["browser.gatherUsageStats"] == [False, owner]
    # One owner: no launch line overrides them with a flag.
    for launcher in ("infra/local/Procfile", "infra/docker/Dockerfile", "compose.yaml"):
        lines = [x for x in (ROOT / launcher).read_text().splitlines() if "streamlit run" in x]
        assert lines and not any("--client." in x or "--server.headless" in x for x in lines)
