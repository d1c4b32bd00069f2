"""The flows' side of notifications (``flows.hooks``): settings wired to ``deliver``.

The failure hook runs when a flow fails: a hung Discord must cost it at most
``IAC_DISCORD_DEADLINE_SECONDS``, and the failure report must wait in the outbox rather
than vanish.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows.hooks import deliver, notify_failure, pending_notifications
from ia_continu.notify.discord import build_embed
from ia_continu.notify.outbox import FILE_NAME, Outbox
from ia_continu.settings import get_settings
from tests.utils.fake_discord import WEBHOOK_TOKEN, FakeDiscord

SLACK = 10.0  # seconds a loaded machine may add around the deadline


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_discord: FakeDiscord) -> Path:
    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IAC_DISCORD_WEBHOOK_URL", fake_discord.url)
    monkeypatch.setenv("IAC_DISCORD_DEADLINE_SECONDS", "1.5")
    monkeypatch.setenv("IAC_DISCORD_TIMEOUT_SECONDS", "30")  # per read: longer than the deadline
    get_settings.cache_clear()
    return tmp_path / "state"


def test_failure_hook_is_bounded_and_queues_on_a_hung_discord(
    env: Path, fake_discord: FakeDiscord
) -> None:
    fake_discord.set_fault("hang")
    flow = SimpleNamespace(name="retrain")
    run = SimpleNamespace(name="brave-otter", parent_task_run_id="a-subflow", start_time=None)
    state = SimpleNamespace(message="MlflowException: registry unreachable", name="Failed")
    started = time.monotonic()
    notify_failure(flow, run, state)
    assert time.monotonic() - started < 1.5 + SLACK
    [waiting] = Outbox(env / FILE_NAME).messages()
    assert waiting.embeds[0]["title"] == "retrain failed"
    assert pending_notifications() == 1
    assert WEBHOOK_TOKEN not in (env / FILE_NAME).read_text()

    fake_discord.set_fault(None)
    report = deliver([build_embed("info", "next cycle")])
    assert (report.delivered, report.outbox) == (2, 0)
    titles = [p["embeds"][0]["title"] for p in fake_discord.received]
    assert titles == ["retrain failed", "next cycle"]


def test_settings_bound_the_deadline() -> None:
    from pydantic import ValidationError

    from ia_continu.settings import Settings

    assert Settings().discord_deadline_seconds == 10.0
    assert Settings().discord_outbox_max_messages == 100
    with pytest.raises(ValidationError, match="discord_deadline_seconds"):
        Settings(discord_deadline_seconds=0)
    with pytest.raises(ValidationError, match="discord_outbox_max_messages"):
        Settings(discord_outbox_max_messages=-1)
