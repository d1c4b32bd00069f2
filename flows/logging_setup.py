"""The project's loguru configuration inside flow runs, Prefect's own logs included."""

from __future__ import annotations

import logging

from ia_continu.logs import InterceptHandler, configure_logging
from ia_continu.settings import get_settings

_configured = False


def setup_flow_logging() -> None:
    """Configure loguru from ``IAC_LOG_LEVEL`` / ``IAC_LOG_JSON`` / ``IAC_LOG_DIR`` once per
    process, and send Prefect's console output through it.

    Prefect's ``APILogHandler`` stays, so flow and task run logs still reach the Prefect UI;
    only its console handler is replaced, so a terminal shows one format (human or JSON,
    secrets redacted) for Prefect's lines and ours.
    """
    global _configured
    if _configured:
        return
    # Importing Prefect runs its dictConfig: first, or it would undo ours.
    from prefect.logging.handlers import PrefectConsoleHandler

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, settings.log_dir)
    for std in [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]:
        if isinstance(std, logging.Logger) and any(
            isinstance(h, PrefectConsoleHandler) for h in std.handlers
        ):
            std.handlers = [h for h in std.handlers if not isinstance(h, PrefectConsoleHandler)] + [
                InterceptHandler()
            ]
    _configured = True
