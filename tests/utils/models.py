"""Model factories of the tests, defined in :mod:`devkit.models` (shared with the
benchmarks) and re-exported here."""

from __future__ import annotations

from devkit.models import elec2_rows, register_version

__all__ = ["elec2_rows", "register_version"]
