"""One loguru configuration for the API, the flows and the console.

Human-readable lines on a terminal, JSON lines (``serialize=True``) when asked;
stdlib logging (uvicorn, SQLAlchemy, MLflow) is routed through loguru; secrets that
slip into a message (bearer tokens, webhook URLs, passwords in URLs) are masked.
Every line carries ``request_id`` (``-`` outside a request).
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

_SECRETS = [
    (re.compile(r"(?i)(bearer\s+)[^\s\"']+"), r"\1***"),
    (re.compile(r"iac_[0-9a-f]{8}_[A-Za-z0-9_-]{43}"), "iac_***"),
    (re.compile(r"(discord(?:app)?\.com/api/webhooks/\d+/)[^\s\"'/]+"), r"\1***"),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1***@"),
]

HUMAN_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
    "{extra[request_id]} | <cyan>{name}</cyan>:{line} - <level>{message}</level>"
)


def redact(text: str) -> str:
    """``text`` with bearer tokens, API tokens, webhook secrets and URL passwords masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _patch(record: Record) -> None:
    record["message"] = redact(record["message"])
    record["extra"].setdefault("request_id", "-")


class InterceptHandler(logging.Handler):
    """Sends stdlib ``logging`` records to loguru (recipe from the loguru README)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Log ``record`` through loguru at its level, attributed to the original caller."""
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def configure_logging(level: str = "INFO", json: bool = False, log_dir: Path | None = None) -> None:
    """Replace loguru's sinks: stderr (human or JSON) and, with ``log_dir``, a rotated file.

    Args:
        level: minimum level name (``DEBUG``, ``INFO``...).
        json: one JSON object per line instead of the coloured human format.
        log_dir: when set, also write ``ia-continu.log`` there, rotated at 50 MB and
            kept 14 days.
    """
    logger.remove()
    logger.configure(extra={"request_id": "-"}, patcher=_patch)
    if json:
        logger.add(sys.stderr, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=level,
            format=HUMAN_FORMAT,
            colorize=sys.stderr.isatty(),
            backtrace=False,
            diagnose=False,
        )
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logger.add(
            log_dir / "ia-continu.log",
            level=level,
            serialize=json,
            rotation="50 MB",
            retention="14 days",
            enqueue=True,
            backtrace=False,
            diagnose=False,
        )
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    for name in ("uvicorn", "uvicorn.error", "fastapi"):
        std = logging.getLogger(name)
        std.handlers = [InterceptHandler()]
        std.propagate = False
    # The API logs each request itself, with its request id; uvicorn's own access line
    # would be a second, id-less copy (uvicorn skips it when the logger has no handler).
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
