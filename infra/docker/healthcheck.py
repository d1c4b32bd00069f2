"""Container healthcheck: exit 0 when ``URL`` answers 2xx within 3 s, else 1.

    iac-healthcheck [URL]      (default: $IAC_HEALTHCHECK_URL)

The images have no curl (the slim and debootstrap bases lack it); httpx is installed.
"""

from __future__ import annotations

import os
import sys

import httpx


def main() -> int:
    """Probe the URL once; the reason for a failure goes to stderr (``docker inspect``)."""
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("IAC_HEALTHCHECK_URL", "")
    if not url:
        print("iac-healthcheck: no URL (argument or IAC_HEALTHCHECK_URL)", file=sys.stderr)
        return 1
    try:
        response = httpx.get(url, timeout=3.0)
    except httpx.HTTPError as exc:
        print(f"iac-healthcheck: {url}: {exc!r}", file=sys.stderr)
        return 1
    if not response.is_success:
        print(f"iac-healthcheck: {url}: HTTP {response.status_code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
