"""Fault class "console pages without login": an attacker opens the console's page URLs
on a freshly started console (before anyone has logged in) and presses what they find.
Also: a malformed operator-password hash, which must read as one line naming the setting.

Real Prefect server, real console process (the Procfile's ``ui`` line), headless Chromium.
The loop's own guarantees (batches, promotions, serving) are not at stake here: what is
asserted is that the schedule and the flow runs stay as they were, that nothing but the
login form is shown, and that the operator's log records refused logins."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from ia_continu.auth.passwords import hash_password
from tests.utils.browser import (
    BIN,
    CONSOLE_ROUTES,
    NESTED_ROUTES,
    chromium_page,
    console,
    open_and_settle,
    require_chromium,
    shown_without_login,
    visible_lines,
)
from tests.utils.servers import free_port, prefect_server
from ui import prefect_ops

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.browser]

# What an attacker presses on the pipeline page if it shows: the "Resume schedule"
# (the operator paused it) and every "Run" button.
ACTIONS = ["Resume schedule", *(f"Run {label}" for label in prefect_ops.DEPLOYMENTS)]


async def _deployments_with_a_paused_schedule() -> None:
    async with get_client() as client:
        for full_name in prefect_ops.DEPLOYMENTS.values():
            flow_name, deployment_name = full_name.split("/")
            flow_id = await client.create_flow_from_name(flow_name)
            deployment_id = await client.create_deployment(flow_id=flow_id, name=deployment_name)
            if full_name == prefect_ops.SCHEDULED:
                await client.set_deployment_paused_state(deployment_id, True)


async def _flow_run_count() -> int:
    async with get_client() as client:
        return len(await client.read_flow_runs())


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server with the console's deployments, the schedule paused by the operator."""
    require_chromium()
    with prefect_server(tmp_path_factory.mktemp("prefect")) as url:
        prefect_ops.call(_deployments_with_a_paused_schedule, 60, url)
        yield url


def _console_env(home: Path, prefect_api: str, password_hash: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IAC_", "PREFECT_", "MLFLOW_"))}
    return env | {
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PREFECT_HOME": str(home / "prefect"),
        "IAC_DATA_DIR": str(home / "state"),
        "IAC_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "IAC_UI_AUTH": "password",
        "IAC_UI_PASSWORD_HASH": password_hash,
        "IAC_UI_PREFECT_API_URL": prefect_api,
        "IAC_UI_API_URL": f"http://127.0.0.1:{free_port()}",
        "IAC_UI_TIMEOUT_SECONDS": "5",
    }


def test_pages_without_login_show_nothing_and_change_nothing(
    prefect_api: str, tmp_path: Path
) -> None:
    env = _console_env(tmp_path, prefect_api, hash_password(f"operator-{os.urandom(6).hex()}"))
    runs_before = prefect_ops.call(_flow_run_count, 30, prefect_api)
    log = tmp_path / "console.log"
    started = time.monotonic()
    with console(env, log) as url, chromium_page(tmp_path / "chromium-profile") as page:
        page.set_default_timeout(90_000)
        # The page routes first: nobody has logged in to this console process yet.
        shown = shown_without_login(page, url, ACTIONS)
        # A wrong password is refused, and the operator can see it in the log.
        open_and_settle(page, url)
        page.get_by_label("Operator password").fill("a-guess-123")
        page.get_by_role("button", name="Log in").click()
        page.get_by_text("Wrong password.").wait_for()
    detected_s = time.monotonic() - started

    pages = f"shown without login: {shown}"
    assert prefect_ops.call(prefect_ops.schedule_paused, 30, prefect_api) is True, pages
    assert prefect_ops.call(_flow_run_count, 30, prefect_api) == runs_before, pages
    assert not shown, pages
    output = log.read_text()
    assert "console login refused: wrong operator password" in output
    assert "a-guess-123" not in output and "Traceback" not in output
    routes = len(CONSOLE_ROUTES) + len(NESTED_ROUTES)
    print(f"fault=console-without-login routes={routes} checked_in_s={detected_s:.0f}")


def test_a_malformed_password_hash_is_one_line_naming_it(prefect_api: str, tmp_path: Path) -> None:
    malformed = "scrypt:16384:8:1:bm90LWEtc2FsdA==:dHJ1bmNhdGVk"  # a truncated paste
    env = _console_env(tmp_path, prefect_api, malformed)
    log = tmp_path / "console.log"
    with console(env, log) as url, chromium_page(tmp_path / "chromium-profile") as page:
        page.set_default_timeout(90_000)
        for route in ("/pipeline", "/"):
            assert open_and_settle(page, url + route)
            page.get_by_text("Invalid console setting: ").wait_for()
            lines = visible_lines(page)
            assert len(lines) == 2 and lines[0] == "Skip to main content", lines
            assert lines[1].startswith("Invalid console setting: IAC_UI_PASSWORD_HASH: ")
            # No traceback, no path, no value, no login form, no developer toolbar.
            for absent in ("Traceback", ".py", "/", malformed, "Operator password", "Deploy"):
                assert absent not in lines[1], absent
    output = log.read_text()
    assert "Invalid console setting: IAC_UI_PASSWORD_HASH" in output  # the operator's log
    assert malformed not in output and "Traceback" not in output
