"""Webhook lookup, notification delivery with the outbox, and the flow-level failure hook."""

from __future__ import annotations

from typing import Any

import pendulum
from loguru import logger

from ia_continu.notify import discord
from ia_continu.notify.outbox import Outbox
from ia_continu.settings import get_settings


def webhook_url() -> str | None:
    """Discord webhook: ``IAC_DISCORD_WEBHOOK_URL`` first, else the Prefect Secret block.

    Returns None (and logs why) when neither is configured; never raises.
    """
    settings = get_settings()
    if settings.discord_webhook_url is not None:
        return settings.discord_webhook_url.get_secret_value()
    try:
        from prefect.blocks.system import Secret

        # Block.load is sync_compatible: it runs synchronously outside an event loop.
        value = Secret.load(settings.discord_secret_block).get()  # type: ignore[attr-defined]
    except ValueError:
        logger.info(
            "No Discord webhook: set IAC_DISCORD_WEBHOOK_URL or create Secret block {!r}",
            settings.discord_secret_block,
        )
        return None
    except Exception as exc:  # the Prefect API may be down; notifications are best effort
        logger.warning(
            "Could not read Secret block {!r}: {}",
            settings.discord_secret_block,
            type(exc).__name__,
        )
        return None
    return str(value) if value else None


def pending_notifications() -> int:
    """Messages waiting in the outbox (``<IAC_DATA_DIR>/discord-outbox.json``)."""
    return Outbox.for_settings(get_settings()).size()


def deliver(embeds: list[dict[str, Any]]) -> discord.Report:
    """Send each embed as one Discord message, after the outbox's waiting messages, within
    one ``IAC_DISCORD_DEADLINE_SECONDS`` wall-clock bound for them all; never raises.

    What Discord cannot take in time (429 beyond ``IAC_DISCORD_MAX_RETRY_AFTER_SECONDS``,
    5xx, no answer, a trickled answer) waits in the outbox for the next call; see
    ``discord.deliver``. The webhook URL is never logged nor returned.
    """
    settings = get_settings()
    return discord.deliver(
        webhook_url(),
        [[embed] for embed in embeds],
        Outbox.for_settings(settings),
        timeout=settings.discord_timeout_seconds,
        deadline=settings.discord_deadline_seconds,
        max_retry_after=settings.discord_max_retry_after_seconds,
    )


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_failure`` hook: a red embed naming the flow, the run and the error message
    (bounded by ``IAC_DISCORD_DEADLINE_SECONDS``; queued when Discord is unavailable)."""
    try:
        embed = discord.build_embed(
            "failure",
            f"{flow.name} failed",
            str(state.message or "no message"),
            {"flow run": flow_run.name, "state": state.name},
        )
        deliver([embed])
    except Exception as exc:  # a hook must never raise
        logger.warning("failure notification not sent: {}", type(exc).__name__)
    if getattr(flow_run, "parent_task_run_id", None) is None:  # top-level runs only
        try:
            from flows.metrics_push import push_run

            started = getattr(flow_run, "start_time", None)
            duration = (pendulum.now("UTC") - started).total_seconds() if started else 0.0
            push_run(None, None, duration, succeeded=False)
        except Exception as exc:  # a hook must never raise
            logger.warning("failure metrics not pushed: {}", type(exc).__name__)
