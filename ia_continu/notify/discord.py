"""Discord webhook notifications: embed builder within Discord's limits, and a sender.

Limits from Discord's developer docs ("Embed Limits", resources/message#embed-object):
title 256, description 4096, 25 fields, field name 256, field value 1024, footer text
2048, author name 256, and 6000 characters across all embeds of a message. Rate limits
(topics/rate-limits): a 429 carries ``retry_after`` in seconds (JSON body) and a
``Retry-After`` header.

Sending never raises and never blocks for long: a notification failure must not fail or
hold up training. One wall-clock ``deadline`` bounds a whole send (every attempt, 429 wait,
backoff and read): httpx's timeouts apply per socket operation, so a server that trickles
its answer one byte at a time would otherwise hold the caller for minutes. The bound is
anyio's ``move_on_after`` around ``httpx.AsyncClient`` (cancellation closes the
connection). ``deliver`` adds an outbox (``ia_continu.notify.outbox``): what Discord could
not take in time is kept for the next cycle.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import anyio
import httpx
from loguru import logger

from ia_continu.notify.outbox import Outbox, Pending

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
    """What happened to one message.

    ``delivered``; the last HTTP status (None: no answer); the attempts made; a detail that
    never contains the webhook URL; ``retryable``: worth trying again later (429, 5xx,
    transport error, deadline), as opposed to a message Discord rejected (other 4xx).
    """

    delivered: bool
    status_code: int | None
    attempts: int
    detail: str
    retryable: bool = False


Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


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


def _quiet_httpx() -> None:
    # httpx logs each request's full URL at INFO; the URL carries the webhook token.
    if logging.getLogger("httpx").getEffectiveLevel() < logging.WARNING:
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _run_sync(function: Callable[[], Awaitable[T]]) -> T:
    """Run ``function()`` to completion from synchronous code.

    ``anyio.run`` needs a thread without a running event loop; a caller inside one (an
    async hook, a notebook) gets a short-lived thread of its own.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(function)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="discord") as pool:
        return pool.submit(anyio.run, function).result()


async def _send_one(
    client: httpx.AsyncClient,
    webhook_url: str,
    embeds: list[dict[str, Any]],
    *,
    deadline_at: float,
    timeout: float,
    max_attempts: int,
    max_retry_after: float,
    sleep: Sleep,
) -> Delivery:
    """One message, retried within ``deadline_at`` (``anyio.current_time()`` clock)."""
    payload = {"embeds": _fit_message(embeds)}
    status: int | None = None
    detail = "no attempt made"
    for attempt in range(1, max_attempts + 1):
        remaining = deadline_at - anyio.current_time()
        if remaining <= 0:
            return Delivery(False, status, attempt - 1, f"{detail}; deadline reached", True)
        response: httpx.Response | None = None
        with anyio.move_on_after(remaining) as scope:
            try:
                response = await client.post(
                    webhook_url, json=payload, timeout=min(timeout, remaining)
                )
            except httpx.HTTPError as exc:  # str(exc) may quote the URL: type name only
                status, detail = None, f"transport error: {type(exc).__name__}"
        if scope.cancelled_caught:
            return Delivery(False, None, attempt, "no complete answer before the deadline", True)
        if response is None:
            wait = 0.5 * attempt
        else:
            status = response.status_code
            if response.is_success:
                return Delivery(True, status, attempt, "delivered")
            if status == 429:
                wait = _retry_after(response)
                detail = f"rate limited, retry_after={wait:.2f}s"
                if wait > max_retry_after:
                    detail += f" over the {max_retry_after:g}s cap"
                    return Delivery(False, status, attempt, detail, True)
            elif status >= 500:
                detail, wait = f"server error {status}", 0.5 * attempt
            else:
                return Delivery(False, status, attempt, f"rejected with {status}")
        if attempt == max_attempts:
            return Delivery(False, status, attempt, detail, True)
        if anyio.current_time() + wait >= deadline_at:
            return Delivery(False, status, attempt, f"{detail}; no time left to retry", True)
        await sleep(wait)
    return Delivery(False, None, 0, "no attempt made (max_attempts < 1)", True)


def send(
    webhook_url: str | None,
    embeds: list[dict[str, Any]],
    *,
    timeout: float = 5.0,
    deadline: float = 10.0,
    max_attempts: int = 3,
    max_retry_after: float = 10.0,
    sleep: Sleep = anyio.sleep,
) -> Delivery:
    """POST one message of ``embeds`` (at most 10 kept) to a Discord webhook. Never raises.

    Args:
        webhook_url: the webhook (a secret: never logged); None or "" sends nothing.
        embeds: ``build_embed`` outputs.
        timeout: seconds per socket operation (connect, write, each read).
        deadline: wall-clock seconds for the whole call, attempts and waits included.
        max_attempts: at most this many POSTs (>= 1).
        max_retry_after: a 429 asking to wait longer than this is not waited for.
        sleep: awaitable sleep (tests record the waits instead).

    429: waits ``retry_after`` then retries, unless the wait exceeds ``max_retry_after``
    or the deadline. 5xx and transport errors: retried with 0.5 s, 1 s, … backoff. Other
    4xx: not retried.

    Returns:
        The delivery outcome; ``retryable`` when a later try may succeed.
    """
    if not webhook_url:
        logger.info("Discord webhook not configured: notification not sent")
        return Delivery(False, None, 0, "no webhook configured")
    url = webhook_url
    _quiet_httpx()

    async def run() -> Delivery:
        deadline_at = anyio.current_time() + deadline
        # Belt and braces: _send_one honours deadline_at; this bounds anything around it.
        with anyio.move_on_after(deadline + 1.0):
            async with httpx.AsyncClient() as client:
                return await _send_one(
                    client,
                    url,
                    embeds,
                    deadline_at=deadline_at,
                    timeout=timeout,
                    max_attempts=max_attempts,
                    max_retry_after=max_retry_after,
                    sleep=sleep,
                )
        return Delivery(False, None, 0, "no complete answer before the deadline", True)

    try:
        delivery = _run_sync(run)
    except Exception as exc:  # never raise: a notification must not fail the caller
        delivery = Delivery(False, None, 0, f"not sent: {type(exc).__name__}")
    if not delivery.delivered:
        logger.warning("Discord notification not delivered: {}", delivery.detail)
    return delivery


@dataclass
class Report:
    """Outcome of one ``deliver`` call: counts of messages, and why some were not delivered.

    ``delivered``: sent this time (new or from the outbox); ``queued``: new messages put in
    the outbox for the next cycle; ``dropped``: given up on (Discord rejected them, or the
    outbox was full); ``outbox``: messages waiting after this call; ``detail``: the first
    failure's reason (never the URL).
    """

    delivered: int = 0
    queued: int = 0
    dropped: int = 0
    outbox: int = 0
    detail: str = ""
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def troubled(self) -> bool:
        """Something was queued or dropped, or messages still wait: worth a warning."""
        return bool(self.queued or self.dropped or self.outbox)

    def summary(self) -> str:
        """One line for logs and Prefect task results."""
        text = (
            f"{self.delivered} delivered, {self.queued} queued, {self.dropped} dropped, "
            f"{self.outbox} waiting in the outbox"
        )
        return f"{text} ({self.detail})" if self.detail else text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts and detail (what the ``send-discord`` task returns)."""
        return {
            "delivered": self.delivered,
            "queued": self.queued,
            "dropped": self.dropped,
            "outbox": self.outbox,
            "detail": self.detail,
        }


def _title(embeds: list[dict[str, Any]]) -> str:
    title = str(embeds[0].get("title", "")) if embeds else ""
    return title[:100]


def deliver(
    webhook_url: str | None,
    messages: Sequence[list[dict[str, Any]]],
    outbox: Outbox | None,
    *,
    timeout: float = 5.0,
    deadline: float = 10.0,
    max_attempts: int = 3,
    max_retry_after: float = 10.0,
    sleep: Sleep = anyio.sleep,
) -> Report:
    """Send the outbox's waiting messages, oldest first, then ``messages``, within one
    wall-clock ``deadline`` (seconds) for them all. Never raises.

    Each message is a list of embeds (one Discord message). At the first retryable failure
    (429, 5xx, transport error, deadline) the call stops: that message and every later one
    go back to the outbox, in order, for the next call. A message Discord rejects (other
    4xx) is dropped and logged. Without an outbox (None) nothing is kept: failures are
    dropped. Without a webhook nothing is sent, queued or counted.

    Every outcome is logged (a warning when something is queued or dropped; the embed
    titles, never the URL) and counted in the outbox's ``counts`` (see
    ``Outbox.settle``), which the flows push as ``iac_notifications_total``.

    Returns:
        The counts for this call.
    """
    try:
        return _deliver(
            webhook_url,
            messages,
            outbox,
            timeout=timeout,
            deadline=deadline,
            max_attempts=max_attempts,
            max_retry_after=max_retry_after,
            sleep=sleep,
        )
    except Exception as exc:  # e.g. an unwritable data dir: log, never fail the caller
        # Only an OSError's text (a path) is shown: other messages might quote the URL.
        shown = f": {exc}" if isinstance(exc, OSError) else ""
        logger.warning("Discord delivery failed: {}{}", type(exc).__name__, shown)
        return Report(detail=f"delivery failed: {type(exc).__name__}")


def _deliver(
    webhook_url: str | None,
    messages: Sequence[list[dict[str, Any]]],
    outbox: Outbox | None,
    *,
    timeout: float,
    deadline: float,
    max_attempts: int,
    max_retry_after: float,
    sleep: Sleep,
) -> Report:
    if not webhook_url:
        if messages:
            logger.info(
                "Discord webhook not configured: {} notification(s) not sent", len(messages)
            )
        return Report(outbox=outbox.size() if outbox is not None else 0)
    url = webhook_url
    _quiet_httpx()
    now = time.time()
    waiting = outbox.take() if outbox is not None else []
    new = [Pending(embeds=list(m), queued_at=now) for m in messages]
    todo = waiting + new
    results: list[Delivery | None] = [None] * len(todo)

    async def run() -> None:
        deadline_at = anyio.current_time() + deadline
        # Belt and braces: _send_one honours deadline_at; this bounds anything around it.
        with anyio.move_on_after(deadline + 1.0):
            async with httpx.AsyncClient() as client:
                for index, message in enumerate(todo):
                    result = await _send_one(
                        client,
                        url,
                        message.embeds,
                        deadline_at=deadline_at,
                        timeout=timeout,
                        max_attempts=max_attempts,
                        max_retry_after=max_retry_after,
                        sleep=sleep,
                    )
                    results[index] = result
                    if not result.delivered and result.retryable:
                        return  # Discord is rate limiting or unwell: the rest waits too

    try:
        _run_sync(run)
    except Exception as exc:  # never raise: whatever was not sent goes back to the outbox
        logger.warning("Discord delivery interrupted: {}", type(exc).__name__)
    report = Report()
    keep: list[Pending] = []
    for index, message in enumerate(todo):
        result = results[index]
        is_new = index >= len(waiting)
        if result is not None:
            report.deliveries.append(result)
        if result is not None and result.delivered:
            report.delivered += 1
            continue
        reason = result.detail if result is not None else "not tried: an earlier message failed"
        if result is not None and not report.detail:
            report.detail = result.detail
        if result is not None and not result.retryable:
            report.dropped += 1
            logger.warning(
                "Discord notification dropped ({}): {!r}", reason, _title(message.embeds)
            )
            continue
        keep.append(message.tried(reason) if result is not None else message)
        if is_new:
            report.queued += 1
    if outbox is None:
        report.dropped += len(keep)
        report.queued = 0
        for message in keep:
            logger.warning("Discord notification dropped (no outbox): {!r}", _title(message.embeds))
    else:
        overflow = outbox.settle(
            keep,
            {"delivered": report.delivered, "queued": report.queued, "dropped": report.dropped},
        )
        report.dropped += len(overflow)
        for message in overflow:
            logger.warning(
                "Discord notification dropped (outbox full, {} kept): {!r}",
                outbox.max_messages,
                _title(message.embeds),
            )
        report.outbox = outbox.size()
    if report.troubled:
        logger.warning("Discord: {}", report.summary())
    elif report.delivered:
        logger.info("Discord: {}", report.summary())
    return report
