"""Several uvicorn workers: /metrics aggregates every worker's counts
(prometheus-client multiprocess mode)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Registry
from tests.utils.models import elec2_rows
from tests.utils.servers import free_port, spawn, stop, wait_healthy


@pytest.mark.slow
def test_two_workers_share_one_metrics_view(
    registry_with_champion: Registry, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAC_")} | {
        "IAC_DATA_DIR": str(tmp_path / "state"),
        "IAC_MLFLOW_TRACKING_URI": registry_with_champion.tracking_uri,
        "IAC_REGISTERED_MODEL_NAME": registry_with_champion.name,
        "IAC_API_PORT": str(port),
        "IAC_API_WORKERS": "2",
        "IAC_API_AUTH": "disabled",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
    }
    log = tmp_path / "api.log"
    proc = spawn([sys.executable, "-m", "api"], log, env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/ready", proc, log)
        rows = elec2_rows(40)
        # A new connection per request, so that both workers accept some.
        for row in rows:
            response = httpx.post(f"http://127.0.0.1:{port}/predict", json=row)
            assert response.status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        # One counter file per process that counted something: both workers served.
        assert len(list((tmp_path / "prom").glob("counter_*.db"))) == 2
    finally:
        stop(proc)
    found = re.search(
        r'^iac_api_requests_total\{method="POST",route="/predict",status="200"\} ([\d.]+)$',
        metrics,
        re.M,
    )
    assert found is not None, metrics[:2000]
    assert float(found.group(1)) == len(rows)
    version = f'iac_api_model_version{{model_name="{registry_with_champion.name}"}}'
    assert f"{version} {float(registry_with_champion.champion)}" in metrics


def test_several_workers_without_multiprocess_dir_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAC_")} | {
        "IAC_API_WORKERS": "2",
        "IAC_DATA_DIR": str(tmp_path),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "api"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "PROMETHEUS_MULTIPROC_DIR" in done.stderr
    assert "Traceback" not in done.stderr
