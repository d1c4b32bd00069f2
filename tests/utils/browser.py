"""Drive Debian's headless Chromium through Playwright for the browser tests.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (installed
by ``infra/scripts/ensure-debian-package.sh /usr/bin/chromium chromium``), and the tests
skip when it is missing. Playwright's sync API runs its own event loop, so call it from
plain (non-async) tests only.

The console helpers start ``ui/app.py`` as ``make demo`` does (:func:`console`) and visit
it as a logged-out attacker would (:func:`shown_without_login`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.utils.servers import free_port, stop, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")

# Without the networking flags Chromium keeps trying to reach the internet, which this
# machine (and CI) cannot. Playwright adds most of them itself; listing them keeps that
# explicit. "--headless" duplicates what headless=True adds, which Chromium accepts.
CHROMIUM_ARGS = [
    # No DNS but loopback: Chromium otherwise looks up Google hosts even with the flags below.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Marks a page whose <script> failed to load (an error event on the element, seen by a
# capturing listener on window). Installed in every page by chromium_page.
_SCRIPT_FAILURES = """
window.addEventListener("error", (event) => {
  if (event.target instanceof HTMLScriptElement) window.__iacScriptFailed = true;
}, true);
"""
# The app root says "running" while the script runs, "notRunning" once a run has ended.
_SETTLED = """() => window.__iacScriptFailed === true || document.querySelector(
  '[data-testid="stApp"][data-test-script-state="notRunning"]') !== null"""


def require_chromium() -> None:
    """Skip the calling test when Debian's Chromium is not installed.

    Raises:
        pytest.skip.Exception: When ``CHROMIUM`` does not exist.
    """
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} missing: apt-get install chromium (or run "
            "infra/scripts/ensure-debian-package.sh /usr/bin/chromium chromium) for browser tests"
        )


@contextmanager
def chromium_page(user_data_dir: Path) -> Iterator[Page]:
    """Open a page in a fresh headless Chromium, and close everything on exit.

    Args:
        user_data_dir: An empty directory for this browser's profile (e.g. a subdirectory of
            pytest's ``tmp_path``); never shared between launches.

    Yields:
        A blank page in a 1400x900 viewport.
    """
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
            # Chromium can take more than Playwright's default 30 s to start at load 10+.
            timeout=180_000,
        )
        # Page loads and waits on a busy 2-core machine: slower, never failed for it.
        context.set_default_timeout(120_000)
        context.add_init_script(_SCRIPT_FAILURES)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


# --- The console (ui/app.py) as the operator starts it ---------------------------------

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent

# URL paths an attacker would try: the page routes, their variants, the old pages/
# directory's names, anything else (any path must land on the login form).
CONSOLE_ROUTES = [
    "/pipeline",
    "/model",
    "/predict",
    "/",
    "/Pipeline",
    "/pipeline/",
    "/predict?row=1",
    "/app",
    "/no-such-page",
]
# Nested paths: Streamlit answers with its HTML, but no app can start there (blank page).
NESTED_ROUTES = ["/views/pipeline", "/pages/pipeline", "/ui/pages/pipeline.py"]
# All a logged-out visitor may see: the skip link, the title, the password field with its
# show/hide toggle ("visibility", the icon's name), the button. No page title, button,
# table, sidebar navigation, developer toolbar ("Deploy") or traceback.
LOGIN_ONLY = ["Skip to main content", "IA Continu", "Operator password", "visibility", "Log in"]


def procfile(log: Path, env: dict[str, str], *processes: str) -> subprocess.Popen[bytes]:
    """Start ``infra/local/Procfile`` under honcho (all processes, or only ``processes``)
    from the repository root, as ``make demo`` does, in its own process group.

    Args:
        log: File for the combined output.
        env: The whole environment of the processes.
        processes: Procfile entries to start (e.g. ``"ui"``); none for all.

    Returns:
        The honcho process; end it with :func:`tests.utils.servers.stop`.
    """
    # honcho does not change directory: the Procfile's relative paths (ui/app.py) need
    # the repository root, wherever pytest runs from.
    args = [str(BIN / "honcho"), "-f", str(ROOT / "infra/local/Procfile"), "-d", str(ROOT)]
    with log.open("wb") as handle:
        return subprocess.Popen(
            [*args, "start", *processes],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )


@contextmanager
def console(env: dict[str, str], log: Path, timeout: float = 180) -> Iterator[str]:
    """Start a fresh console process the way ``make demo`` does (honcho runs
    ``infra/local/Procfile``'s ``ui`` line) on a free port; yield its base URL.

    Fresh matters: Streamlit's legacy ``pages/`` mode lasts until the first
    ``st.navigation`` call in the process, i.e. until someone logs in.

    Args:
        env: The whole environment of the process (``IAC_UI_*`` settings, ``PATH`` with
            the venv's ``bin`` first); ``IAC_UI_PORT`` is set here.
        log: File for the console's output (its log lines, tracebacks if any).
        timeout: Seconds to wait for ``/_stcore/health``.

    Raises:
        RuntimeError, TimeoutError: the console exited or never answered (with its log).
    """
    port = free_port()
    proc = procfile(log, {**env, "IAC_UI_PORT": str(port)}, "ui")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/_stcore/health", proc, log, timeout)
        yield url
    finally:
        stop(proc)


def open_and_settle(page: Page, url: str) -> bool:
    """Open ``url`` (a new Streamlit session) and wait until its script run has ended.

    Returns:
        True once the app has run; False when its scripts did not load, so no app ran and
        the page stays blank: Streamlit answers any path with its HTML, whose asset paths
        are relative, so under a nested path (``/views/pipeline``) they miss.
    """
    page.goto(url)
    page.wait_for_function(_SETTLED)
    # Streamlit loads some element components on first use (the text input, say): wait
    # for those downloads too.
    page.wait_for_load_state("networkidle")
    return not page.evaluate("window.__iacScriptFailed === true")


def visible_lines(page: Page) -> list[str]:
    """The page's visible text, one entry per non-blank line."""
    return [line.strip() for line in page.locator("body").inner_text().splitlines() if line.strip()]


def lines_once_drawn(page: Page, expected: list[str], timeout: float = 15) -> list[str]:
    """``visible_lines`` once they equal ``expected``, or as they are after ``timeout`` s:
    a finished run's elements may still be drawing (a component fetched on first use)."""
    deadline = time.monotonic() + timeout
    lines = visible_lines(page)
    while lines != expected and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        lines = visible_lines(page)
    return lines


def shown_without_login(page: Page, base_url: str, press: list[str]) -> dict[str, list[str]]:
    """Visit every route of ``CONSOLE_ROUTES`` and ``NESTED_ROUTES`` as a logged-out visitor,
    pressing any button of ``press`` a page shows (what an attacker would do).

    Returns:
        Route -> visible lines, for each route that showed more than the login form (or,
        for a nested route, anything at all); empty when the console held.
    """
    shown: dict[str, list[str]] = {}
    for route in CONSOLE_ROUTES:
        if not open_and_settle(page, base_url + route):
            shown[route] = ["(the app did not start)"]
            continue
        for label in press:
            button = page.get_by_role("button", name=label, exact=True)
            if button.count():
                button.first.click()
                page.wait_for_timeout(2_000)
        lines = lines_once_drawn(page, LOGIN_ONLY)
        if lines != LOGIN_ONLY:
            shown[route] = lines
    for route in NESTED_ROUTES:
        if open_and_settle(page, base_url + route) or visible_lines(page):
            shown[route] = visible_lines(page)
    return shown
