"""Fixtures shared by the fault tests: a Prefect test harness and a fake Discord."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness

from tests.utils.fake_discord import FakeDiscord


@pytest.fixture(scope="module")
def _prefect() -> Iterator[None]:
    """A real, temporary Prefect server (Prefect's own harness) for the module's flows."""
    with prefect_test_harness():
        yield


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    """A local server that answers like Discord's webhook endpoint."""
    with FakeDiscord() as fake:
        yield fake
