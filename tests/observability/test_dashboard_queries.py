"""Every PromQL expression of the Grafana dashboard, evaluated by a real Prometheus
(Debian's package) scraping a real Pushgateway, fed by real continuous_training runs,
and the real prediction API under traffic. Each must return data.

With ``DASHBOARD_PLOT=path.png`` the same series are drawn with matplotlib (README):
Grafana itself cannot run here, so its rendering cannot be shown.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from api.settings import ApiSettings
from ia_continu.data.storage.migrate import migrate
from ia_continu.settings import Settings, get_settings
from tests.utils.live_api import serve_in_thread
from tests.utils.prometheus import prometheus, pushgateway

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "infra" / "grafana" / "dashboards" / "ia-continu.json"
CYCLES = 5  # synthetic concept drift, 3-batch periods: the flip at cycle 4 retrains


#: Panels fed only by serving cycles (``IAC_DATA_SOURCE=serving``): this module's
#: synthetic stream cannot push their metrics, so they are left out here, by row.
SERVING_ROW = "Serving traffic"


def _rows(board: dict[str, Any]) -> dict[str, str]:
    """Panel title -> title of the row it sits in (Grafana: the panels after a row, up to
    the next one, belong to it)."""
    row, out = "", {}
    for panel in board["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
        else:
            out[panel["title"]] = row
    return out


def dashboard_queries(skip_rows: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(panel title or annotation name, PromQL) for every query of the dashboard, except
    those of the panels in ``skip_rows``."""
    board = json.loads(DASHBOARD.read_text())
    rows = _rows(board)
    queries = [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
        if rows.get(panel["title"]) not in skip_rows
    ]
    queries += [
        (f"annotation {a['name']}", a["expr"])
        for a in board["annotations"]["list"]
        if a.get("datasource", {}).get("type") == "prometheus"
    ]
    return queries


@pytest.fixture(scope="module")
def fed_prometheus(harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("observability")
    mlflow_uri = f"sqlite:///{home / 'mlflow.db'}"
    env = {
        "IAC_DATA_DIR": str(home / "state"),
        "IAC_MLFLOW_TRACKING_URI": mlflow_uri,
        "IAC_DATA_SOURCE": "synthetic",
        "IAC_SYNTHETIC_MODE": "concept_drift",
        "IAC_BATCH_SIZE": "200",
        "IAC_SYNTHETIC_PERIOD_BATCHES": "3",
        "IAC_TRAINING_WINDOW_BATCHES": "2",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    migrate(get_settings().resolved_database_url)  # as the bootstrap does before any flow
    try:
        with pushgateway(home / "pgw") as gateway:
            os.environ["IAC_PUSHGATEWAY_URL"] = gateway
            get_settings.cache_clear()
            from flows.continuous_training import continuous_training

            continuous_training()  # a champion exists before the API starts
            app = create_app(
                ApiSettings(auth="disabled", reload_interval_seconds=1),  # type: ignore[call-arg]
                Settings(data_dir=home / "api", mlflow_tracking_uri=mlflow_uri),
            )
            with serve_in_thread(app) as api:
                targets = {
                    "api": api.removeprefix("http://"),
                    "pushgateway": gateway.removeprefix("http://"),
                }
                rules = [ROOT / "infra" / "prometheus" / "alerts.yml"]
                with prometheus(home / "prom", targets, rules) as prom:
                    stop = threading.Event()
                    traffic = threading.Thread(target=_traffic, args=(api, stop), daemon=True)
                    traffic.start()
                    try:
                        for _ in range(CYCLES - 1):
                            continuous_training()
                            time.sleep(1.5)  # a scrape between cycles
                        time.sleep(5)
                        yield prom
                    finally:
                        stop.set()
                        traffic.join(10)
    finally:
        os.environ.pop("IAC_PUSHGATEWAY_URL", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def _traffic(api: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=api, timeout=5) as client:
        while not stop.is_set():
            client.post("/predict", json={"feature1": 0.3, "feature2": -0.1})
            client.post("/predict", json={"feature1": "not a number", "feature2": 0})
            time.sleep(0.02)


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _query_range(prom: str, expr: str, seconds: float = 900) -> list[dict[str, Any]]:
    """``expr`` over the last ``seconds``, as Grafana evaluates panels and annotations."""
    end = time.time()
    answer = httpx.get(
        f"{prom}/api/v1/query_range",
        params={"query": expr, "start": end - seconds, "end": end, "step": 1},
        timeout=30,
    ).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_every_dashboard_query_returns_data(fed_prometheus: str) -> None:
    """Over the dashboard's time range, not at one instant: the retrain annotation is data
    for the minute after each retrain, and on a slow machine the fixture's last cycles can
    take longer than that. The serving row is not fed by a synthetic stream: only its
    panels are left out, and they name only serving metrics."""
    queries = dashboard_queries(skip_rows=(SERVING_ROW,))
    assert len(queries) >= 12
    left_out = set(dashboard_queries()) - set(queries)
    assert {title for title, _ in left_out} == {
        "Estimated vs realised accuracy",
        "Label coverage",
        "Serving drift",
    }
    assert all(
        re.match(
            r"iac_(estimated_accuracy|realised_accuracy|label_coverage|serving_drift"
            r"|prediction_drift)",
            expr,
        )
        for _, expr in left_out
    ), left_out
    empty = [(title, expr) for title, expr in queries if not _query_range(fed_prometheus, expr)]
    assert not empty, empty


def test_the_series_say_what_happened(fed_prometheus: str) -> None:
    """Values, not just presence: the flip at cycle 4 drifted and promoted version 2."""
    loop = 'deployment="continuous_training/local"'
    version = _query(fed_prometheus, f"max_over_time(iac_champion_version{{{loop}}}[5m])")
    assert float(version[0]["value"][1]) >= 2
    concept = _query(fed_prometheus, f"max_over_time(iac_concept_drift_detected{{{loop}}}[5m])")
    assert float(concept[0]["value"][1]) == 1.0
    served = _query(fed_prometheus, "max(iac_api_model_version)")
    assert float(served[0]["value"][1]) >= 1
    statuses = {r["metric"]["status"] for r in _query(fed_prometheus, "iac_api_requests_total")}
    assert {"200", "422"} <= statuses
    since = _query(
        fed_prometheus, f"time() - max(iac_flow_last_success_timestamp_seconds{{{loop}}})"
    )
    assert 0 <= float(since[0]["value"][1]) < 60
    # The alert rules load and evaluate in the same server.
    rules = httpx.get(f"{fed_prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"IacLoopStalled", "IacApiDown"}
    for group in rules:
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule

    plot = os.environ.get("DASHBOARD_PLOT")
    if plot:
        from tests.observability.plot import plot_dashboard

        plot_dashboard(fed_prometheus, Path(plot))
