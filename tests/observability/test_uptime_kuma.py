"""Uptime Kuma provisioning against a real Uptime Kuma (uptime-kuma@2.0.0-dev.0 from npm,
installed and cached by infra/uptime-kuma/install-dev-server.sh), on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.uptime_kuma import NOTIFICATION, KumaSettings, provision
from tests.utils.servers import free_port, stop

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "kuma-test-password"
WEBHOOK = "http://127.0.0.1:9/api/webhooks/1/not-a-real-token"


@pytest.fixture(scope="module")
def kuma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("npm") is None:
        pytest.skip("npm missing: Uptime Kuma comes from the npm registry")
    installed = subprocess.run(
        [str(ROOT / "infra/uptime-kuma/install-dev-server.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    package = Path(installed.stdout.strip().splitlines()[-1])
    data = tmp_path_factory.mktemp("kuma-data")
    (data / "db-config.json").write_text(json.dumps({"type": "sqlite"}))
    port = free_port()
    log = data / "kuma.log"
    env = {
        **os.environ,
        "DATA_DIR": f"{data}/",
        "UPTIME_KUMA_HOST": "127.0.0.1",
        "UPTIME_KUMA_PORT": str(port),
    }
    proc = subprocess.Popen(
        ["node", "server/server.js"],
        cwd=package,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield url
    finally:
        stop(proc)


def _settings(url: str, **overrides: object) -> KumaSettings:
    return KumaSettings(
        url=url,
        password=PASSWORD,  # type: ignore[arg-type]
        IAC_DISCORD_WEBHOOK_URL=WEBHOOK,  # type: ignore[call-arg]
        **overrides,  # type: ignore[arg-type]
    )


def _state(url: str) -> tuple[dict[str, dict], dict[str, dict]]:  # type: ignore[type-arg]
    from uptime_kuma_api import UptimeKumaApi

    with UptimeKumaApi(url, timeout=10) as api:
        api.login("admin", PASSWORD)
        return (
            {m["name"]: m for m in api.get_monitors()},
            {n["name"]: n for n in api.get_notifications()},
        )


def test_first_run_sets_up_kuma_and_creates_everything(kuma: str) -> None:
    report = provision(_settings(kuma))
    assert set(report.created) == {
        NOTIFICATION,
        "IA Continu API",
        "IA Continu Prefect",
        "IA Continu MLflow",
        "IA Continu console",
    }
    monitors, notifications = _state(kuma)
    api = monitors["IA Continu API"]
    assert api["url"] == "http://127.0.0.1:8000/health"
    assert api["interval"] == 30
    assert api["type"] == "http"
    assert monitors["IA Continu Prefect"]["url"] == "http://127.0.0.1:4200/api/health"
    assert monitors["IA Continu console"]["url"] == "http://127.0.0.1:8501/_stcore/health"
    discord = notifications[NOTIFICATION]
    assert discord["type"] == "discord" and discord["discordWebhookUrl"] == WEBHOOK
    for monitor in monitors.values():
        assert discord["id"] in monitor["notificationIDList"], monitor["name"]


def test_second_run_changes_nothing(kuma: str) -> None:
    before, _ = _state(kuma)
    report = provision(_settings(kuma))
    assert report.created == [] and report.updated == []
    after, _ = _state(kuma)
    assert {n: m["id"] for n, m in after.items()} == {n: m["id"] for n, m in before.items()}


def test_a_changed_url_updates_the_monitor_in_place(kuma: str) -> None:
    before, _ = _state(kuma)
    report = provision(_settings(kuma, api_url="http://127.0.0.1:8100"))
    assert report.updated == ["IA Continu API"]
    after, _ = _state(kuma)
    assert after["IA Continu API"]["url"] == "http://127.0.0.1:8100/health"
    assert after["IA Continu API"]["id"] == before["IA Continu API"]["id"]
    assert len(after) == len(before)


def _provision_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m deployments.uptime_kuma`` as an operator runs it, with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "deployments.uptime_kuma"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_password_names_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAC_")}
    result = _provision_cli(env)
    assert result.returncode == 2
    assert "IAC_UPTIME_KUMA_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_kuma_fails_without_a_stack_trace() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IAC_")},
        "IAC_UPTIME_KUMA_URL": f"http://127.0.0.1:{free_port()}",
        "IAC_UPTIME_KUMA_PASSWORD": PASSWORD,
        "IAC_UPTIME_KUMA_TIMEOUT_SECONDS": "2",
    }
    result = _provision_cli(env)
    assert result.returncode == 1
    assert "Uptime Kuma" in result.stderr and "Traceback" not in result.stderr
