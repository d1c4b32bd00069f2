"""GET /health, /ready and /model, before and after a champion exists."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Registry
from tests.utils.models import register_version


def test_ready_turns_200_once_a_champion_is_registered(
    make_app: AppFactory, tmp_path: Path
) -> None:
    empty = Registry(f"sqlite:///{tmp_path / 'empty.db'}", "not-yet", 0)
    with TestClient(make_app(empty, auth="disabled")) as client:
        assert client.get("/health").json() == {"status": "ok"}
        not_ready = client.get("/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["ready"] is False
        assert "no 'champion' alias" in not_ready.json()["last_error"]
        assert client.get("/model").status_code == 503
        assert client.post("/predict", json={"x": 1}).status_code == 503

        version = register_version(empty.tracking_uri, empty.name)
        deadline = time.monotonic() + 10
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = client.get("/ready").json()
        assert ready["ready"] is True and ready["model_version"] == version
        assert ready["registry_reachable"] is True
        assert (ready["alias"], ready["alias_version"], ready["fallback_reason"]) == (
            "champion",
            version,
            None,
        )


def test_model_describes_the_served_version(
    open_client: TestClient, registry_with_champion: Registry
) -> None:
    info = open_client.get("/model").json()
    assert info["name"] == registry_with_champion.name
    assert info["version"] == registry_with_champion.champion
    assert info["alias"] == "champion"
    assert info["trained_at"] and info["loaded_at"] and info["run_id"]
    assert 0.5 < info["metrics"]["validation_accuracy"] <= 1
    columns = {c["name"]: c["type"] for c in info["input_columns"]}
    assert columns == {
        "day": "string",
        "period": "double",
        "nswprice": "double",
        "nswdemand": "double",
        "vicprice": "double",
        "vicdemand": "double",
        "transfer": "double",
    }
    assert "inputs" in info["signature"]
