"""Fixtures for the Discord notification tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loguru import logger

from tests.utils.fake_discord import fake_discord  # noqa: F401


class RecordingSleep:
    """Stands in for ``anyio.sleep`` where real backoff would only slow the suite down:
    records the waits, does not wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Everything loguru emits during the test, fully formatted (message, extra, exception)."""
    lines: list[str] = []
    sink_id = logger.add(
        lambda message: lines.append(str(message)),
        level="TRACE",
        format="{time} {level} {name}:{function}:{line} {message} | {extra} | {exception}",
    )
    try:
        yield lines
    finally:
        logger.remove(sink_id)
