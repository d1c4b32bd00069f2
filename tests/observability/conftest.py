"""Observability tests run flows under Prefect's test harness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness():
        yield
