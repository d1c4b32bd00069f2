"""Discord webhook notifications: embed builder within Discord's limits, and a sender.

Limits from Discord's developer docs ("Embed Limits", resources/message#embed-object):
title 256, description 4096, 25 fields, field name 256, field value 1024, footer text
2048, author name 256, and 6000 characters across all embeds of a message. Rate limits
(topics/rate-limits): a 429 carries ``retry_after`` in seconds (JSON body) and a
``Retry-After`` header.

Sending never raises: a notification failure must not fail or block training.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from loguru import logger

Status = Literal["success", "failure", "warning", "drift", "info"]

COLOURS: dict[str, int] = {
    "success": 0x2ECC71,  # green
    "failure": 0xE74C3C,  # red
    "warning": 0xF39C12,  # orange
    "drift": 0x9B59B6,  # purple
    "info": 0x3498DB,  # blue
}
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
TOTAL_MAX = 6000
ELLIPSIS = "…"


def _cut(text: str, limit: int) -> str:
    text = str(text)
    if not text.strip():
        return "-"  # Discord rejects empty or whitespace-only names and values
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def build_embed(
    status: Status,
    title: str,
    description: str = "",
    fields: dict[str, Any] | None = None,
    *,
    timestamp: datetime | None = None,
    footer: str = "IA Continu",
) -> dict[str, Any]:
    """One Discord embed, truncated to Discord's limits.

    Args:
        status: picks the colour (``success``, ``failure``, ``warning``, ``drift``, ``info``).
        title: embed title (cut to 256 characters).
        description: body text (cut to 4096).
        fields: name -> value, shown inline; at most 25 kept, values cut to 1024.
        timestamp: shown by Discord in the reader's time zone; default now (UTC).
        footer: footer text.

    Returns:
        A JSON-ready embed whose visible text totals at most 6000 characters.

    Raises:
        ValueError: unknown ``status``.
    """
    if status not in COLOURS:
        raise ValueError(f"unknown status {status!r}; one of {list(COLOURS)}")
    embed: dict[str, Any] = {
        "title": _cut(title or status.title(), TITLE_MAX),
        "color": COLOURS[status],
        "timestamp": _utc(timestamp or datetime.now(UTC)).isoformat(),
        "footer": {"text": _cut(footer, FOOTER_MAX)},
    }
    if description:
        embed["description"] = _cut(description, DESCRIPTION_MAX)
    items = list((fields or {}).items())[:FIELDS_MAX]
    if items:
        embed["fields"] = [
            {
                "name": _cut(name, FIELD_NAME_MAX),
                "value": _cut(value, FIELD_VALUE_MAX),
                "inline": True,
            }
            for name, value in items
        ]
    _fit_total(embed)
    return embed


def _utc(moment: datetime) -> datetime:
    # A naive timestamp is taken as UTC so Discord does not guess the zone.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def embed_length(embed: dict[str, Any]) -> int:
    """Characters Discord counts towards the 6000 limit for ``embed``."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += len(embed.get("footer", {}).get("text", ""))
    total += len(embed.get("author", {}).get("name", ""))
    for item in embed.get("fields", []):
        total += len(item["name"]) + len(item["value"])
    return total


def _fit_total(embed: dict[str, Any]) -> None:
    # Drop fields from the end first, then shorten the description.
    while embed_length(embed) > TOTAL_MAX and embed.get("fields"):
        embed["fields"].pop()
    excess = embed_length(embed) - TOTAL_MAX
    if excess > 0 and "description" in embed:
        embed["description"] = _cut(embed["description"], len(embed["description"]) - excess)


@dataclass(frozen=True)
class Delivery:
    """What happened to one message: ``delivered`` and the last HTTP status, if any."""

    delivered: bool
    status_code: int | None
    attempts: int
    detail: str


def _retry_after(response: httpx.Response) -> float:
    """Seconds to wait from a 429: JSON ``retry_after``, else ``Retry-After``, else 1 s."""
    for read in (
        lambda: response.json().get("retry_after"),
        lambda: response.headers["Retry-After"],
    ):
        try:
            wait = float(read())
        except (TypeError, ValueError, AttributeError, KeyError):
            continue
        if math.isfinite(wait):
            return max(wait, 0.0)
    return 1.0


def _fit_message(embeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # At most 10 embeds, 6000 characters across all of them: keep the first that fit.
    kept, total = [], 0
    for embed in embeds[:10]:
        total += embed_length(embed)
        if total > TOTAL_MAX:
            break
        kept.append(embed)
    return kept


def send(
    webhook_url: str | None,
    embeds: list[dict[str, Any]],
    *,
    timeout: float = 5.0,
    max_attempts: int = 3,
    max_retry_after: float = 10.0,
    http: httpx.Client | None = None,
    sleep: Any = time.sleep,
) -> Delivery:
    """POST ``embeds`` (at most 10) to a Discord webhook. Never raises.

    429: waits ``retry_after`` seconds then retries, unless the wait exceeds
    ``max_retry_after`` (then gives up rather than block training). 5xx and transport
    errors: retried with 0.5 s, 1 s, … backoff. Other 4xx: not retried. The URL is a
    secret and is never logged.

    Returns:
        The delivery outcome.
    """
    if not webhook_url:
        logger.info("Discord webhook not configured: notification not sent")
        return Delivery(False, None, 0, "no webhook configured")
    payload = {"embeds": _fit_message(embeds)}
    # httpx logs each request's full URL at INFO; the URL carries the webhook token.
    if logging.getLogger("httpx").getEffectiveLevel() < logging.WARNING:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    owned = http is None
    client = http or httpx.Client(timeout=timeout)
    status: int | None = None
    detail = ""
    attempt = 0
    try:
        for attempt in range(1, max_attempts + 1):
            try:
                response = client.post(webhook_url, json=payload, timeout=timeout)
            except httpx.HTTPError as exc:
                status, detail = None, f"transport error: {type(exc).__name__}"
                if attempt < max_attempts:
                    sleep(0.5 * attempt)
                continue
            status = response.status_code
            if response.is_success:
                return Delivery(True, status, attempt, "delivered")
            if status == 429:
                wait = _retry_after(response)
                detail = f"rate limited, retry_after={wait:.2f}s"
                if wait > max_retry_after or attempt == max_attempts:
                    break
                sleep(wait)
                continue
            if status >= 500:
                detail = f"server error {status}"
                if attempt < max_attempts:
                    sleep(0.5 * attempt)
                continue
            detail = f"rejected with {status}"
            break
    finally:
        if owned:
            client.close()
    logger.warning("Discord notification not delivered: {}", detail or "no attempt made")
    return Delivery(False, status, attempt, detail)
