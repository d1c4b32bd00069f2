"""Fixtures for the Discord notification tests."""

from tests.utils.fake_discord import fake_discord  # noqa: F401
