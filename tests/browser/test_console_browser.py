"""The console in a real browser against the running demo stack: headless Chromium
(Debian's) driven by Playwright logs in, presses "Run continuous_training" and sees the
new flow run appear with its state; on a console process started fresh, every URL path
shows the login form and nothing else until the operator logs in. Screenshots land in
``test-artifacts/`` (and, with ``CONSOLE_SCREENSHOTS_DIR`` set, one per page for the
README)."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from ia_continu.auth.passwords import hash_password
from tests.utils.browser import (
    chromium_page,
    console,
    open_and_settle,
    procfile,
    require_chromium,
    shown_without_login,
)
from tests.utils.servers import free_port, stop
from ui import prefect_ops

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "test-artifacts"
BIN = Path(sys.executable).parent
FINAL = {"Completed", "Skipped", "Failed", "Crashed", "Cancelled"}


def _wait(check, what: str, timeout: float, proc, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo stack exited:\n{log.read_text()[-4000:]}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


class Demo(NamedTuple):
    """The running demo stack: the console's URL, the operator password, the environment
    its processes were started with."""

    ui: str
    password: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`make demo`'s Procfile on free ports with an operator password."""
    require_chromium()
    home = tmp_path_factory.mktemp("demo")
    password = f"operator-{os.urandom(6).hex()}"  # made up at run time, never stored
    ports = {name: free_port() for name in ("prefect", "mlflow", "api", "ui")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IAC_", "PREFECT_", "MLFLOW_"))}
    env |= {
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
        "PREFECT_PORT": str(ports["prefect"]),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_PORT": str(ports["mlflow"]),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "IAC_DATA_DIR": str(home / "state"),
        "IAC_PROJECT_DIR": str(ROOT),
        "IAC_WORK_POOL": "browser-test-pool",
        "IAC_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "IAC_DATA_SOURCE": "synthetic",
        "IAC_BATCH_SIZE": "200",
        "IAC_API_PORT": str(ports["api"]),
        "IAC_UI_PORT": str(ports["ui"]),
        "IAC_UI_API_URL": f"http://127.0.0.1:{ports['api']}",
        "IAC_UI_PREFECT_UI_URL": f"http://127.0.0.1:{ports['prefect']}",
        "IAC_UI_API_TOKEN_FILE": str(home / "state" / "console.token"),
        "IAC_UI_AUTH": "password",
        "IAC_UI_PASSWORD_HASH": hash_password(password),
        "IAC_UI_TIMEOUT_SECONDS": "5",
    }
    (home / "state").mkdir(parents=True)
    log = home / "demo.log"
    proc = procfile(log, env)
    try:
        ui = f"http://127.0.0.1:{ports['ui']}"
        api = env["PREFECT_API_URL"]
        _wait(lambda: httpx.get(f"{ui}/_stcore/health").is_success, "console", 240, proc, log)
        _wait(
            lambda: (
                httpx.get(
                    f"{api}/deployments/name/continuous_training/continuous-training"
                ).is_success
            ),
            "deployments",
            300,
            proc,
            log,
        )
        yield Demo(ui, password, env)
    finally:
        stop(proc)


def test_every_route_shows_only_the_login_on_a_fresh_console(
    demo_stack: Demo, tmp_path: Path
) -> None:
    """A second console on the demo stack's servers, started for this test: no one has
    logged in to it, so no st.navigation call has happened in its process (Streamlit's
    legacy pages/ mode served /pipeline, /model, /predict without login until then)."""
    schedule = (prefect_ops.schedule_paused, 30, demo_stack.env["PREFECT_API_URL"])
    paused = prefect_ops.call(*schedule)
    # What an attacker presses if a page shows it: flip the schedule, start a run.
    buttons = ["Resume schedule" if paused else "Pause schedule", "Run continuous_training"]
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        console(demo_stack.env, tmp_path / "console.log") as url,
        chromium_page(tmp_path / "chromium-profile") as page,
    ):
        page.set_default_timeout(90_000)
        shown = shown_without_login(page, url, buttons)
        if not shown:  # then the login still leads to the page the URL names
            open_and_settle(page, f"{url}/pipeline")
            page.screenshot(path=str(ARTIFACTS / "console-login.png"), full_page=True)
            page.get_by_label("Operator password").fill(demo_stack.password)
            page.get_by_role("button", name="Log in").click()
            page.get_by_text("Recent flow runs", exact=True).wait_for()
            # Logged in in this tab (st.navigation has run in the process): another tab is
            # another Streamlit session, still logged out.
            other = page.context.new_page()
            other.set_default_timeout(90_000)
            shown = shown_without_login(other, url, buttons)
    # Outside the browser block: Playwright's sync API holds this thread's event loop.
    assert not shown, f"shown without login: {shown}"
    assert prefect_ops.call(*schedule) == paused


def test_log_in_run_continuous_training_and_see_it(demo_stack: Demo, tmp_path: Path) -> None:
    ui, password = demo_stack.ui, demo_stack.password
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(tmp_path / "chromium-profile") as page:
        page.set_default_timeout(90_000)
        page.goto(ui)
        page.get_by_label("Operator password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.get_by_text("Start a flow run").wait_for()

        page.get_by_role("button", name="Run continuous_training").click()
        alert = page.get_by_text("Started continuous_training/continuous-training")
        alert.wait_for()
        run_name = alert.get_by_role("link").inner_text().strip()
        assert re.fullmatch(r"[a-z]+-[a-z]+", run_name), run_name

        # The new run shows in the table with its state; refresh until the worker ends it.
        state = ""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            row = page.locator("tr", has=page.get_by_role("link", name=run_name, exact=True))
            if row.count():
                state = row.first.locator("td").nth(2).inner_text().strip()
                if state in FINAL:
                    break
            page.get_by_role("button", name="Refresh").click()
            page.wait_for_timeout(3_000)
        page.screenshot(path=str(ARTIFACTS / "console-run-continuous-training.png"), full_page=True)
        assert state in {"Completed", "Skipped"}, f"run {run_name} ended as {state!r}"

        shots = os.environ.get("CONSOLE_SCREENSHOTS_DIR")
        if shots:
            _page_screenshots(page, Path(shots))


def _page_screenshots(page, target: Path) -> None:  # type: ignore[no-untyped-def]
    """One screenshot per page, once its content has rendered (for the README). Pages are
    opened from the sidebar: a new URL would start a new session, logged out."""
    target.mkdir(parents=True, exist_ok=True)
    for title, name, ready in [
        ("Pipeline", "pipeline", "Recent flow runs"),
        ("Model", "model", "Batches ingested"),
        ("Predict", "predict", "CSV batch"),
    ]:
        page.get_by_role("link", name=title, exact=True).click()
        page.get_by_text(ready, exact=True).wait_for()
        page.wait_for_timeout(3_000)  # charts draw after the text
        page.screenshot(path=str(target / f"console-{name}.png"), full_page=True)
