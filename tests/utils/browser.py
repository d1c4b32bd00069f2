"""Drive Debian's headless Chromium through Playwright for the browser tests.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (installed
by ``infra/scripts/ensure-debian-package.sh /usr/bin/chromium chromium``), and the tests
skip when it is missing. Playwright's sync API runs its own event loop, so call it from
plain (non-async) tests only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

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
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()
