"""Fault class "Discord 429 / hang / trickle / 5xx": a bad Discord never holds the loop.

The real ``continuous_training`` flow runs under the Prefect test harness (MLflow in a
SQLite file, metrics pushed to a real Pushgateway) against the fake Discord on 127.0.0.1
in each bad mode:

========= ================================================ ===============================
 mode      the fake Discord                                 expected
========= ================================================ ===============================
 hang      reads the request, never answers                 cut at the deadline, queued
 trickle   answers one byte per second (each read succeeds) cut at the deadline, queued
 429       ``retry_after`` 30 s, over the 5 s cap           not waited for, queued
 5xx       503 on every attempt                             retried, queued
========= ================================================ ===============================

For each: a cycle with a notification to send (``force_retrain``: a retrain outcome)
completes, its ``send-discord`` task ends within ``IAC_DISCORD_DEADLINE_SECONDS`` plus a
slack generous for a busy machine (read from the Prefect API's task run times), the
operator is told (a warning in the run's logs, ``iac_notifications_outbox_messages`` and
``iac_notifications_total{outcome="queued"}`` on the Pushgateway); then Discord heals and
the very next cycle delivers the queued messages first, in order. Batch positions stay
contiguous and unique, the champion alias stays in place, and the webhook URL appears in
no log line, Prefect log, flow-run parameter or outbox file.

Before the fix, the same cycle took 3 x the 10 s read timeout on a hang and ~64 s on the
trickle, and the 429 / 5xx messages were dropped (never delivered after the heal).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pendulum
import pytest
from loguru import logger
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterName,
    TaskRunFilterStartTime,
)
from prefect.logging.handlers import APILogHandler
from prefect.testing.utilities import prefect_test_harness
from prometheus_client.parser import text_string_to_metric_families

from flows.continuous_training import continuous_training
from ia_continu.data.sources import build_source
from ia_continu.data.storage import repository
from ia_continu.data.storage.migrate import migrate
from ia_continu.notify.outbox import Outbox
from ia_continu.settings import get_settings
from tests.utils.fake_discord import WEBHOOK_TOKEN, FakeDiscord
from tests.utils.prometheus import pushgateway

pytestmark = [pytest.mark.faults, pytest.mark.integration]

DEADLINE = 3.0  # IAC_DISCORD_DEADLINE_SECONDS
READ_TIMEOUT = 10.0  # IAC_DISCORD_TIMEOUT_SECONDS: per read, longer than the deadline
RETRY_AFTER_CAP = 5.0  # IAC_DISCORD_MAX_RETRY_AFTER_SECONDS
SLACK = 15.0  # what a loaded 2-core machine may add around the deadline

FAULTS: dict[str, dict[str, Any]] = {
    "hang": {"kind": "hang"},
    "trickle": {"kind": "trickle", "byte_interval": 1.0},
    "429": {"kind": "status", "status": 429, "retry_after": 30.0},
    "5xx": {"kind": "status", "status": 503},
}
DETAILS = {
    "hang": ("no complete answer before the deadline", "transport error: ReadTimeout"),
    "trickle": ("no complete answer before the deadline",),
    "429": ("rate limited, retry_after=30.00s over the 5s cap",),
    "5xx": ("server error 503",),
}


@dataclass
class Loop:
    discord: FakeDiscord
    gateway: str
    home: Path
    env: dict[str, str]
    lines: list[str]  # every loguru line of the module, formatted


@pytest.fixture(scope="module")
def _loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """One harness, MLflow store, data dir, Pushgateway and fake Discord for all modes."""
    home = tmp_path_factory.mktemp("discord-faults")
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    with (
        prefect_test_harness(),
        FakeDiscord() as discord,
        pushgateway(home / "pgw") as gateway,
    ):
        env = {
            "IAC_DATA_DIR": str(home / "state"),
            "IAC_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "IAC_DATA_SOURCE": "synthetic",
            "IAC_SYNTHETIC_MODE": "stable",  # quiet cycles: only forced retrains notify
            "IAC_BATCH_SIZE": "200",
            "IAC_TRAINING_WINDOW_BATCHES": "2",
            "IAC_PUSHGATEWAY_URL": gateway,
            "IAC_DISCORD_WEBHOOK_URL": discord.url,
            "IAC_DISCORD_DEADLINE_SECONDS": str(DEADLINE),
            "IAC_DISCORD_TIMEOUT_SECONDS": str(READ_TIMEOUT),
            "IAC_DISCORD_MAX_RETRY_AFTER_SECONDS": str(RETRY_AFTER_CAP),
        }
        migrate(f"sqlite:///{home / 'state' / 'ia_continu.db'}")  # as the bootstrap does
        try:
            yield Loop(discord, gateway, home, env, lines)
        finally:
            logger.remove(sink)


@pytest.fixture
def loop(_loop: Loop, monkeypatch: pytest.MonkeyPatch) -> Loop:
    """The module's loop, its IAC_* variables set (the root conftest clears them per test)."""
    for key, value in _loop.env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return _loop


def _titles(payloads: list[Any]) -> list[str]:
    return [p["embeds"][0]["title"] for p in payloads]


def _pushed(gateway: str) -> dict[str, float]:
    """``name{outcome}`` -> value for the notification metrics of continuous_training."""
    text = httpx.get(f"{gateway}/metrics", timeout=10).text
    return {
        s.name + (f"{{{s.labels['outcome']}}}" if "outcome" in s.labels else ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("iac_notifications")
        and s.labels.get("deployment") == "continuous_training/local"
    }


async def _run_record(run_id: UUID) -> tuple[list[str], dict[str, Any]]:
    """The run's log messages (its tasks' included) and its parameters."""
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
        )
        run = await client.read_flow_run(run_id)
    lines = [f"{logging.getLevelName(log.level)} {log.message}" for log in logs]
    return lines, dict(run.parameters)


def _record(run_id: UUID) -> tuple[list[str], dict[str, Any]]:
    APILogHandler.flush()  # the run's log lines reach the API in the background
    return asyncio.run(_run_record(run_id))


async def _send_task_runs(since: datetime) -> list[Any]:
    async with get_client() as client:
        return await client.read_task_runs(
            task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(like_="send-discord"),
                start_time=TaskRunFilterStartTime(after_=since),
            )
        )


def _notify_seconds(since: datetime) -> float:
    """Wall time of every ``send-discord`` task run started since ``since`` (the cycle's
    notifications, wherever they ran: in the cycle or in a ``notify`` subflow)."""
    runs = asyncio.run(_send_task_runs(since))
    assert runs, "the cycle sent no notification"
    assert all(r.state is not None and r.state.is_completed() for r in runs), runs
    return sum((r.end_time - r.start_time).total_seconds() for r in runs)


def _positions() -> list[int]:
    settings = get_settings()
    batches = repository.latest_batches(
        migrate(settings.resolved_database_url), build_source(settings).name, 1000
    )
    return sorted(b.position for b in batches)


@pytest.mark.parametrize("mode", list(FAULTS))
def test_a_bad_discord_never_holds_the_cycle(loop: Loop, mode: str) -> None:
    discord = loop.discord
    outbox = Outbox.for_settings(get_settings())
    assert outbox.size() == 0  # the previous mode's heal delivered everything
    before = _pushed(loop.gateway)
    discord.reset()
    discord.set_fault(**FAULTS[mode])

    # --- the fault: a cycle with something to say -------------------------------------
    since = pendulum.now("UTC")
    started = time.monotonic()
    state = continuous_training(force_retrain=True, return_state=True)
    cycle_seconds = time.monotonic() - started
    assert state.is_completed() and state.name == "Completed", state
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    logs, parameters = _record(run_id)
    notify_seconds = _notify_seconds(since)
    assert notify_seconds < DEADLINE + SLACK, (mode, notify_seconds)

    assert discord.requests, "Discord was tried"
    assert discord.received == []
    waiting = [m.embeds[0]["title"] for m in outbox.messages()]
    assert any("promoted to champion" in t or t == "Challenger rejected" for t in waiting)
    reasons = {m.reason for m in outbox.messages() if m.attempts}
    assert any(r.startswith(DETAILS[mode]) for r in reasons), reasons
    # The operator is told: a warning in the run's logs, and the metrics.
    assert any(
        line.startswith("WARNING Discord: 0 delivered") and "queued" in line for line in logs
    ), logs
    pushed = _pushed(loop.gateway)
    assert pushed["iac_notifications_outbox_messages"] == len(waiting)
    queued_before = before.get("iac_notifications_total{queued}", 0.0)
    assert pushed["iac_notifications_total{queued}"] == queued_before + len(waiting)

    # --- the fault ends: the next cycle delivers what waited, in order -----------------
    healed = time.monotonic()
    discord.set_fault(None)
    state = continuous_training(return_state=True)
    assert state.is_completed() and state.name == "Completed", state
    assert _titles(discord.received)[: len(waiting)] == waiting
    recovered_seconds = discord.requests[-1].at - healed
    assert outbox.size() == 0
    pushed = _pushed(loop.gateway)
    assert pushed["iac_notifications_outbox_messages"] == 0
    delivered_before = before.get("iac_notifications_total{delivered}", 0.0)
    assert pushed["iac_notifications_total{delivered}"] >= delivered_before + len(waiting)
    assert pushed["iac_notifications_total{dropped}"] == 0

    # --- the loop's invariants --------------------------------------------------------
    positions = _positions()
    assert positions == list(range(len(positions)))  # none lost, none twice
    uri = get_settings().mlflow_tracking_uri
    champion = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(
        get_settings().registered_model_name, "champion"
    )
    assert champion.version
    heal_run = state.state_details.flow_run_id
    assert heal_run is not None
    texts = [*loop.lines, *logs, *_record(heal_run)[0], str(parameters)]
    if outbox.path.exists():
        texts.append(outbox.path.read_text())
    for text in texts:
        assert WEBHOOK_TOKEN not in text and "/api/webhooks/" not in text
    print(
        f"\nfault-table discord-{mode}: send-discord {notify_seconds:.1f} s "
        f"(deadline {DEADLINE:g} s), cycle {cycle_seconds:.1f} s, queued {len(waiting)}, "
        f"delivered {recovered_seconds:.1f} s after the heal, positions {positions}"
    )
