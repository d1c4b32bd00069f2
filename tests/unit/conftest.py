"""Unit tests: pure functions, no server, no Prefect harness."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """mutmut 3.7 (``make mutation``) reads ``Item._nodeid``, which pytest 9 no longer
    has: give it the public node id."""
    for item in items:
        item.__dict__.setdefault("_nodeid", item.nodeid)
