"""``discord.send`` against a real local HTTP server that behaves like a Discord webhook."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from ia_continu.notify.discord import Delivery, build_embed, send
from tests.unit.notify.conftest import RecordingSleep
from tests.utils.fake_discord import WEBHOOK_TOKEN, FakeDiscord, closed_port_url


@pytest.fixture
def embed() -> dict[str, Any]:
    return build_embed("success", "Retrained", "accuracy 0.91", {"model": "v4", "rows": 1200})


# --------------------------------------------------------------------------------------
# Success and "not configured"
# --------------------------------------------------------------------------------------


def test_delivered_in_one_attempt(fake_discord: FakeDiscord, embed: dict[str, Any]) -> None:
    delivery = send(fake_discord.url, [embed])
    assert delivery == Delivery(True, 204, 1, "delivered")
    assert fake_discord.received == [{"embeds": [embed]}]
    [request] = fake_discord.requests
    assert request.method == "POST"
    assert request.path == "/api/webhooks/123/fake-token"
    assert request.headers["Content-Type"].startswith("application/json")
    assert json.loads(request.body) == {"embeds": [embed]}
    assert request.status == 204


@pytest.mark.parametrize("url", [None, ""])
def test_no_webhook_sends_nothing(
    fake_discord: FakeDiscord, embed: dict[str, Any], url: str | None
) -> None:
    delivery = send(url, [embed])
    assert delivery.delivered is False
    assert delivery.status_code is None
    assert delivery.attempts == 0
    assert "webhook" in delivery.detail and "configured" in delivery.detail
    assert fake_discord.requests == []


def test_at_most_ten_embeds_are_sent(fake_discord: FakeDiscord) -> None:
    embeds = [build_embed("info", f"e{i}") for i in range(12)]
    assert send(fake_discord.url, embeds).delivered
    [payload] = fake_discord.received
    assert [e["title"] for e in payload["embeds"]] == [f"e{i}" for i in range(10)]


def test_several_large_embeds_fit_discord_total(fake_discord: FakeDiscord) -> None:
    embeds = [build_embed("info", "t", "d" * 4000) for _ in range(2)]  # 2 x 4011 characters
    send(fake_discord.url, embeds)
    assert all(r.status < 400 for r in fake_discord.requests)


# --------------------------------------------------------------------------------------
# 429 rate limits
# --------------------------------------------------------------------------------------


def test_429_then_204_honours_retry_after(fake_discord: FakeDiscord, embed: dict[str, Any]) -> None:
    fake_discord.script(429, retry_after=0.3)
    delivery = send(fake_discord.url, [embed])  # real time.sleep
    assert delivery == Delivery(True, 204, 2, "delivered")
    assert [r.status for r in fake_discord.requests] == [429, 204]
    first, second = fake_discord.requests
    assert second.at - first.at >= 0.3
    assert fake_discord.received == [{"embeds": [embed]}]


def test_429_uses_body_retry_after_not_rounded_header(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    # The header says "1" (whole seconds); the JSON body's 0.25 is the precise value.
    fake_discord.script(429, retry_after=0.25)
    sleep = RecordingSleep()
    assert send(fake_discord.url, [embed], sleep=sleep).delivered
    assert sleep.calls == [0.25]


def test_429_longer_than_max_retry_after_is_not_waited_for(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    fake_discord.script(429, retry_after=30.0)
    sleep = RecordingSleep()
    delivery = send(fake_discord.url, [embed], max_retry_after=10.0, deadline=60, sleep=sleep)
    assert sleep.calls == []
    assert delivery.delivered is False
    assert delivery.retryable is True  # deliver() keeps it for the next cycle
    assert delivery.status_code == 429
    assert delivery.attempts == 1
    assert delivery.detail == "rate limited, retry_after=30.00s over the 10s cap"
    assert len(fake_discord.requests) == 1


def test_persistent_429_stops_after_max_attempts(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    fake_discord.script(*[429] * 5, retry_after=0.3)
    sleep = RecordingSleep()
    delivery = send(fake_discord.url, [embed], max_attempts=3, sleep=sleep)
    assert delivery.delivered is False
    assert delivery.retryable is True
    assert delivery.status_code == 429
    assert delivery.attempts == 3
    assert len(fake_discord.requests) == 3
    assert sleep.calls[:2] == [0.3, 0.3]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (
            b'{"message": "You are being rate limited.", "retry_after": null}',
            {"Content-Type": "application/json"},
        ),
        (
            b'{"message": "You are being rate limited.", "retry_after": -1}',
            {"Content-Type": "application/json"},
        ),
        (b"<html>429 Too Many Requests</html>", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
    ],
    ids=["null", "negative", "http-date"],
)
def test_malformed_429_never_raises(
    fake_discord: FakeDiscord,
    embed: dict[str, Any],
    body: bytes,
    headers: dict[str, str],
) -> None:
    fake_discord.script_raw(429, body, headers)
    sleep = RecordingSleep()
    delivery = send(fake_discord.url, [embed], max_attempts=2, sleep=sleep)
    assert delivery.delivered  # the second attempt is answered normally
    assert len(sleep.calls) == 1 and 0.0 <= sleep.calls[0] <= 1.0  # fallback: 1 s or less


# --------------------------------------------------------------------------------------
# 5xx and other errors
# --------------------------------------------------------------------------------------


def test_500_502_then_204_delivered_on_third_attempt(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    fake_discord.script(500, 502)
    sleep = RecordingSleep()
    delivery = send(fake_discord.url, [embed], sleep=sleep)
    assert delivery == Delivery(True, 204, 3, "delivered")
    assert [r.status for r in fake_discord.requests] == [500, 502, 204]
    assert sleep.calls == [0.5, 1.0]  # backoff between attempts
    assert fake_discord.received == [{"embeds": [embed]}]


@pytest.mark.parametrize("attempts", [1, 3, 5])
def test_persistent_503_gives_up_without_raising(
    fake_discord: FakeDiscord, embed: dict[str, Any], attempts: int
) -> None:
    fake_discord.script(*[503] * 10)
    sleep = RecordingSleep()
    delivery = send(fake_discord.url, [embed], max_attempts=attempts, sleep=sleep)
    assert delivery == Delivery(False, 503, attempts, "server error 503", retryable=True)
    assert len(fake_discord.requests) == attempts
    assert sleep.calls[: attempts - 1] == [0.5 * n for n in range(1, attempts)]  # backoff grows
    assert fake_discord.received == []


@pytest.mark.parametrize("status", [503, 429])
def test_no_sleep_after_the_last_attempt(
    fake_discord: FakeDiscord, embed: dict[str, Any], status: int
) -> None:
    fake_discord.script(*[status] * 5, retry_after=0.3)
    sleep = RecordingSleep()
    send(fake_discord.url, [embed], max_attempts=2, sleep=sleep)
    assert len(sleep.calls) == 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, 404), (401, 401), (400, 400), (403, 403)],
)
def test_client_errors_are_not_retried(
    fake_discord: FakeDiscord,
    embed: dict[str, Any],
    status: int,
    expected: int,
) -> None:
    fake_discord.script(status, 204)
    sleep = RecordingSleep()
    delivery = send(fake_discord.url, [embed], sleep=sleep)
    assert delivery == Delivery(False, expected, 1, f"rejected with {expected}", retryable=False)
    assert len(fake_discord.requests) == 1
    assert sleep.calls == []


def test_unknown_webhook_id_is_a_404_not_retried(
    fake_discord: FakeDiscord, embed: dict[str, Any]
) -> None:
    url = fake_discord.url.replace("/123/", "/999/")
    delivery = send(url, [embed], sleep=RecordingSleep())
    assert (delivery.delivered, delivery.status_code, delivery.attempts) == (False, 404, 1)


def test_invalid_embed_is_a_400_not_retried(fake_discord: FakeDiscord) -> None:
    delivery = send(fake_discord.url, [{"title": "x" * 300}], sleep=RecordingSleep())
    assert (delivery.delivered, delivery.status_code, delivery.attempts) == (False, 400, 1)
    [request] = fake_discord.requests
    assert request.status == 400


# --------------------------------------------------------------------------------------
# Transport errors
# --------------------------------------------------------------------------------------


def test_connection_refused_never_raises(embed: dict[str, Any]) -> None:
    sleep = RecordingSleep()
    delivery = send(closed_port_url(), [embed], max_attempts=3, sleep=sleep)
    assert delivery == Delivery(False, None, 3, "transport error: ConnectError", retryable=True)
    assert len(sleep.calls) >= 2


def test_read_timeout_never_raises(embed: dict[str, Any]) -> None:
    # A socket that listens but never answers: connect succeeds, the read times out.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"http://127.0.0.1:{port}/api/webhooks/123/{WEBHOOK_TOKEN}"
        started = time.monotonic()
        delivery = send(url, [embed], timeout=0.2, max_attempts=2, sleep=RecordingSleep())
        elapsed = time.monotonic() - started
    assert delivery == Delivery(False, None, 2, "transport error: ReadTimeout", retryable=True)
    assert elapsed < 30.0  # two 0.2 s per-read timeouts; generous for a busy machine


# --------------------------------------------------------------------------------------
# The webhook URL is a secret
# --------------------------------------------------------------------------------------


def test_webhook_token_never_logged(
    fake_discord: FakeDiscord, embed: dict[str, Any], log_lines: list[str]
) -> None:
    fake_discord.script(404)
    send(fake_discord.url, [embed], sleep=RecordingSleep())
    fake_discord.script(*[503] * 3)
    send(fake_discord.url, [embed], sleep=RecordingSleep())
    fake_discord.script(429, retry_after=60)
    send(fake_discord.url, [embed], sleep=RecordingSleep())
    send(fake_discord.url, [{"title": "x" * 300}], sleep=RecordingSleep())
    send(closed_port_url(), [embed], sleep=RecordingSleep())
    send(fake_discord.url, [embed])
    send(None, [embed])

    assert len(log_lines) >= 6  # the failures and "not configured" were logged
    for line in log_lines:
        assert WEBHOOK_TOKEN not in line
        assert "/api/webhooks/" not in line
