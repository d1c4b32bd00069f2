"""One wall-clock deadline per notification, against a fake Discord that hangs or trickles.

httpx's ``timeout`` applies per socket operation: a server answering one byte every 0.3 s
never trips a 5 s read timeout, and one that never answers costs a read timeout per
attempt. These tests check the whole call ends within its deadline plus a slack that is
generous for a busy machine (the bound, not the speed, is what is asserted).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from ia_continu.notify.discord import build_embed, deliver, send
from ia_continu.notify.outbox import Outbox
from tests.unit.notify.conftest import RecordingSleep
from tests.utils.fake_discord import FakeDiscord

SLACK = 10.0  # seconds beyond the deadline a loaded 2-core box may need to wind down


@pytest.fixture
def embed() -> dict[str, Any]:
    return build_embed("info", "Cycle report", "accuracy 0.91")


def _timed(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = function(*args, **kwargs)
    return result, time.monotonic() - started


def test_hang_is_bounded_by_the_deadline(fake_discord: FakeDiscord, embed: dict[str, Any]) -> None:
    fake_discord.set_fault("hang")
    # Per read 5 s, three attempts: without a deadline this takes 3 x 5 s + backoff.
    delivery, elapsed = _timed(send, fake_discord.url, [embed], timeout=5.0, deadline=2.0)
    assert elapsed < 2.0 + SLACK
    assert not delivery.delivered and delivery.retryable
    assert delivery.status_code is None
    assert fake_discord.received == []


def test_trickle_is_bounded_by_the_deadline(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    # One byte every 0.3 s: every read succeeds well within the 5 s per-read timeout, and
    # the ~60-byte answer would take ~20 s.
    fake_discord.set_fault("trickle", byte_interval=0.3)
    delivery, elapsed = _timed(send, fake_discord.url, [embed], timeout=5.0, deadline=2.0)
    assert elapsed < 2.0 + SLACK
    assert (delivery.delivered, delivery.retryable) == (False, True)
    assert delivery.detail == "no complete answer before the deadline"
    assert delivery.attempts == 1
    assert len(fake_discord.requests) == 1
    assert fake_discord.received == []  # the fake never finished its answer


def test_a_trickle_that_ends_in_time_is_delivered(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    fake_discord.script_trickle(byte_interval=0.005)
    delivery = send(fake_discord.url, [embed], deadline=60.0)
    assert delivery.delivered and delivery.status_code == 204
    assert fake_discord.received == [{"embeds": [embed]}]


def test_429_within_the_cap_but_past_the_deadline_is_not_waited_for(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    fake_discord.script(429, retry_after=8.0)
    sleep = RecordingSleep()
    delivery = send(fake_discord.url, [embed], deadline=3.0, max_retry_after=10.0, sleep=sleep)
    assert sleep.calls == []
    assert (delivery.delivered, delivery.retryable, delivery.status_code) == (False, True, 429)
    assert delivery.detail == "rate limited, retry_after=8.00s; no time left to retry"
    assert len(fake_discord.requests) == 1


def test_backoff_counts_against_the_deadline(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    fake_discord.set_fault("status", status=503)
    # Real sleeps: 0.5 s after attempt 1, then 1 s would end past the 1.2 s deadline.
    delivery, elapsed = _timed(send, fake_discord.url, [embed], deadline=1.2, max_attempts=10)
    assert elapsed < 1.2 + SLACK
    assert delivery.attempts in (1, 2)  # 1 only when the first exchange alone took > 0.7 s
    assert delivery.detail == "server error 503; no time left to retry"
    assert delivery.retryable


def test_one_deadline_for_a_whole_round(
    fake_discord: FakeDiscord, embed: dict[str, Any], tmp_path: Path
) -> None:
    """Three messages against a hung Discord cost one deadline, not three; none is lost."""
    fake_discord.set_fault("hang")
    outbox = Outbox(tmp_path / "outbox.json")
    messages = [[build_embed("info", f"m{i}")] for i in range(3)]
    report, elapsed = _timed(deliver, fake_discord.url, messages, outbox, deadline=2.0)
    assert elapsed < 2.0 + SLACK
    assert (report.delivered, report.queued, report.dropped, report.outbox) == (0, 3, 0, 3)
    assert len(fake_discord.requests) <= 2  # the first message only (a retry at most)
    assert [m.embeds[0]["title"] for m in outbox.messages()] == ["m0", "m1", "m2"]


def test_send_works_from_inside_an_event_loop(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    async def caller() -> bool:
        return send(fake_discord.url, [embed]).delivered

    assert asyncio.run(caller())
    assert len(fake_discord.received) == 1
