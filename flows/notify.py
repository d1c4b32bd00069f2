"""``notify``: send one Discord embed (and any left in the outbox); never fails the caller."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.tasks import send_discord
from ia_continu.notify import discord


@flow(name="notify")
def notify(
    status: str = "info",
    title: str = "IA Continu",
    description: str = "",
    fields: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build an embed (colour by status) and post it to the configured webhook.

    Bounded by ``IAC_DISCORD_DEADLINE_SECONDS``; returns ``send_discord``'s counts.

    Raises:
        ValueError: unknown ``status``.
    """
    if status not in discord.COLOURS:
        raise ValueError(f"status must be one of {list(discord.COLOURS)}, got {status!r}")
    embed = discord.build_embed(status, title, description, fields)  # type: ignore[arg-type]
    return send_discord([embed])


if __name__ == "__main__":
    notify()
