"""``deliver`` and the outbox: what Discord cannot take now is delivered on a later call.

Against the fake Discord on 127.0.0.1; waits are recorded instead of slept where the test
is about the decision, not the clock.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from ia_continu.notify.discord import build_embed, deliver
from ia_continu.notify.outbox import Outbox, Pending
from tests.unit.notify.conftest import RecordingSleep
from tests.utils.fake_discord import WEBHOOK_TOKEN, FakeDiscord


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "state" / "discord-outbox.json", max_messages=100)


def _message(title: str) -> list[dict[str, Any]]:
    return [build_embed("info", title)]


def _titles(payloads: list[Any]) -> list[str]:
    return [p["embeds"][0]["title"] for p in payloads]


def _waiting(outbox: Outbox) -> list[str]:
    return [m.embeds[0]["title"] for m in outbox.messages()]


def test_delivered_at_once_leaves_nothing_behind(fake_discord: FakeDiscord, outbox: Outbox) -> None:
    report = deliver(fake_discord.url, [_message("a"), _message("b")], outbox)
    assert report.as_dict() == {
        "delivered": 2,
        "queued": 0,
        "dropped": 0,
        "outbox": 0,
        "detail": "",
    }
    assert _titles(fake_discord.received) == ["a", "b"]
    assert outbox.counts() == {"delivered": 2, "queued": 0, "dropped": 0}


def test_429_over_the_cap_is_queued_then_delivered_next_cycle(
    fake_discord: FakeDiscord, outbox: Outbox, log_lines: list[str]
) -> None:
    fake_discord.script(429, retry_after=30.0)
    sleep = RecordingSleep()
    first = deliver(
        fake_discord.url, [_message("promoted")], outbox, max_retry_after=10.0, sleep=sleep
    )
    assert sleep.calls == []  # 30 s is over the 10 s cap: not waited for
    assert (first.delivered, first.queued, first.dropped, first.outbox) == (0, 1, 0, 1)
    assert "retry_after=30.00s over the 10s cap" in first.detail
    assert any("WARNING" in line and "1 queued" in line for line in log_lines)
    [waiting] = outbox.messages()
    assert waiting.attempts == 1 and "rate limited" in waiting.reason

    # Next cycle: Discord is fine again; the queued message goes first, then the new one.
    second = deliver(fake_discord.url, [_message("drift")], outbox, sleep=sleep)
    assert (second.delivered, second.queued, second.outbox) == (2, 0, 0)
    assert _titles(fake_discord.received) == ["promoted", "drift"]
    assert outbox.counts() == {"delivered": 2, "queued": 1, "dropped": 0}
    # The embed keeps the time of the event, not of the late delivery.
    assert fake_discord.received[0]["embeds"][0]["timestamp"] == (waiting.embeds[0]["timestamp"])


def test_5xx_is_retried_then_queued_then_delivered(
    fake_discord: FakeDiscord, outbox: Outbox
) -> None:
    fake_discord.set_fault("status", status=503)
    sleep = RecordingSleep()
    report = deliver(fake_discord.url, [_message("a")], outbox, max_attempts=3, sleep=sleep)
    assert [r.status for r in fake_discord.requests] == [503, 503, 503]
    assert sleep.calls == [0.5, 1.0]
    assert (report.delivered, report.queued, report.outbox) == (0, 1, 1)
    assert report.detail == "server error 503"

    fake_discord.set_fault(None)
    report = deliver(fake_discord.url, [], outbox, sleep=sleep)  # a quiet cycle flushes
    assert (report.delivered, report.outbox) == (1, 0)
    assert _titles(fake_discord.received) == ["a"]


def test_first_retryable_failure_stops_the_round_and_keeps_the_order(
    fake_discord: FakeDiscord, outbox: Outbox
) -> None:
    outbox.settle([Pending(embeds=_message("old"), queued_at=1.0)], {})
    fake_discord.set_fault("status", status=502)
    report = deliver(
        fake_discord.url, [_message("new1"), _message("new2")], outbox, sleep=RecordingSleep()
    )
    # Only the head was tried (3 attempts); the rest waited behind it.
    assert len(fake_discord.requests) == 3
    assert all(json.loads(r.body)["embeds"][0]["title"] == "old" for r in fake_discord.requests)
    assert (report.queued, report.outbox) == (2, 3)
    assert _waiting(outbox) == ["old", "new1", "new2"]
    assert [m.attempts for m in outbox.messages()] == [1, 0, 0]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_rejected_messages_are_dropped_not_queued(
    fake_discord: FakeDiscord, outbox: Outbox, log_lines: list[str], status: int
) -> None:
    fake_discord.script(status)
    report = deliver(fake_discord.url, [_message("bad"), _message("good")], outbox)
    assert (report.delivered, report.queued, report.dropped, report.outbox) == (1, 0, 1, 0)
    assert _titles(fake_discord.received) == ["good"]
    assert outbox.counts() == {"delivered": 1, "queued": 0, "dropped": 1}
    assert any("dropped" in line and "'bad'" in line for line in log_lines)


def test_outbox_is_bounded_oldest_dropped_first(
    fake_discord: FakeDiscord, tmp_path: Path, log_lines: list[str]
) -> None:
    outbox = Outbox(tmp_path / "outbox.json", max_messages=3)
    fake_discord.set_fault("status", status=429, retry_after=60.0)
    for index in range(5):
        deliver(fake_discord.url, [_message(f"m{index}")], outbox, sleep=RecordingSleep())
    assert _waiting(outbox) == ["m2", "m3", "m4"]
    assert outbox.counts() == {"delivered": 0, "queued": 5, "dropped": 2}
    assert sum("outbox full" in line for line in log_lines) == 2
    assert (tmp_path / "outbox.json").stat().st_size < 10_000


def test_zero_sized_outbox_and_no_outbox_drop_at_once(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake_discord.set_fault("status", status=503)
    zero = Outbox(tmp_path / "zero.json", max_messages=0)
    report = deliver(fake_discord.url, [_message("a")], zero, sleep=RecordingSleep())
    assert (report.outbox, report.dropped) == (0, 1)
    assert zero.counts()["dropped"] == 1
    report = deliver(fake_discord.url, [_message("b")], None, sleep=RecordingSleep())
    assert (report.queued, report.dropped, report.outbox) == (0, 1, 0)


@pytest.mark.parametrize("url", [None, ""])
def test_no_webhook_sends_queues_and_counts_nothing(
    fake_discord: FakeDiscord, outbox: Outbox, url: str | None
) -> None:
    report = deliver(url, [_message("a")], outbox)
    assert report.as_dict() == {
        "delivered": 0,
        "queued": 0,
        "dropped": 0,
        "outbox": 0,
        "detail": "",
    }
    assert fake_discord.requests == []
    assert not outbox.path.exists()


def test_a_corrupt_outbox_is_set_aside_not_fatal(
    fake_discord: FakeDiscord, outbox: Outbox, log_lines: list[str]
) -> None:
    outbox.path.parent.mkdir(parents=True)
    outbox.path.write_text('{"messages": [{"embeds": "not a list"}]}')
    report = deliver(fake_discord.url, [_message("a")], outbox)
    assert report.delivered == 1
    aside = outbox.path.with_name(outbox.path.name + ".corrupt")
    assert aside.exists()
    assert any(str(outbox.path) in line and "not valid" in line for line in log_lines)


def test_concurrent_senders_deliver_each_queued_message_once(
    fake_discord: FakeDiscord, outbox: Outbox
) -> None:
    outbox.settle([Pending(embeds=_message(f"q{i}"), queued_at=i) for i in range(12)], {})
    threads = [
        threading.Thread(
            target=deliver,
            args=(fake_discord.url, [_message(f"n{i}")], outbox),
            kwargs={"deadline": 120.0},  # the bound is not under test here
        )
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    titles = _titles(fake_discord.received)
    assert sorted(titles) == sorted([f"q{i}" for i in range(12)] + ["n0", "n1", "n2"])
    assert outbox.size() == 0
    assert outbox.counts()["delivered"] == 15


def test_webhook_url_is_in_no_log_file_or_report(
    fake_discord: FakeDiscord, outbox: Outbox, log_lines: list[str]
) -> None:
    fake_discord.script(429, retry_after=60.0)
    first = deliver(fake_discord.url, [_message("a")], outbox)
    fake_discord.script(404)
    second = deliver(fake_discord.url, [_message("b")], outbox)
    fake_discord.set_fault("hang")
    third = deliver(fake_discord.url, [_message("c")], outbox, deadline=1.0)
    assert log_lines
    reports = [json.dumps(report.as_dict()) for report in (first, second, third)]
    for text in [*log_lines, outbox.path.read_text(), *reports]:
        assert WEBHOOK_TOKEN not in text
        assert "/api/webhooks/" not in text


def test_an_unwritable_data_dir_never_raises(
    fake_discord: FakeDiscord, tmp_path: Path, log_lines: list[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data dir should be")
    fake_discord.script(503, 503, 503)
    report = deliver(
        fake_discord.url,
        [_message("a")],
        Outbox(blocker / "discord-outbox.json"),
        sleep=RecordingSleep(),
    )
    assert report.detail.startswith("delivery failed: ")
    assert any("Discord delivery failed" in line for line in log_lines)


def test_a_malformed_url_never_raises(outbox: Outbox) -> None:
    report = deliver("http://[not-a-host/api/webhooks/1/secret", [_message("a")], outbox)
    assert report.delivered == 0
    assert "secret" not in report.summary()
