"""``python -m api``: serve the API with uvicorn on IAC_API_HOST:IAC_API_PORT."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn

from api.settings import get_api_settings
from ia_continu.settings import settings_or_exit, validated_or_exit


def main() -> None:
    """Validate settings (exit 2 naming the variable on error), then run uvicorn."""
    settings_or_exit()
    api_settings = validated_or_exit(get_api_settings, "IAC_API_")
    multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc:
        # prometheus-client's multiprocess mode needs a directory emptied before start.
        directory = Path(multiproc)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    elif api_settings.workers > 1:
        print(
            "IAC_API_WORKERS > 1 needs PROMETHEUS_MULTIPROC_DIR (an empty directory), "
            "or /metrics would show one worker's counts",
            file=sys.stderr,
        )
        raise SystemExit(2)
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=api_settings.host,
        port=api_settings.port,
        workers=api_settings.workers,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
