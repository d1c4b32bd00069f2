"""Model page: champion and previous with metrics, charts from the drift history, and a
rollback that needs a confirmation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ia_continu import registry
from ia_continu.storage.schema import get_engine
from tests.ui.conftest import open_page
from tests.utils.history import store_cycles

TIMEOUT = 60


def _history(data_dir: Path) -> None:
    engine = get_engine(f"sqlite:///{(data_dir / 'ia_continu.db').resolve()}")
    store_cycles(
        engine, [(0.8, 1, False, "ok"), (0.5, 1, True, "concept drift"), (0.82, 2, False, "ok")]
    )


@pytest.fixture
def model_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, two_versions: tuple[str, str]
) -> str:
    uri, name = two_versions
    monkeypatch.setenv("IAC_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("IAC_REGISTERED_MODEL_NAME", name)
    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IAC_UI_TIMEOUT_SECONDS", "10")
    (tmp_path / "state").mkdir()
    return uri


def test_aliases_charts_and_rollback(model_env: str, tmp_path: Path) -> None:
    _history(tmp_path / "state")
    app = open_page("model", TIMEOUT).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    headers = [h.value for h in app.subheader]
    assert "champion: version 2" in headers and "previous: version 1" in headers
    assert {"Accuracy per batch", "Drift statistic per feature", "Batches ingested"} <= set(headers)
    assert len(app.get("vega_lite_chart")) == 2  # accuracy + drift heatmap
    assert app.metric[0].value == "3 batches"

    rollback = app.button(key="rollback")
    assert rollback.disabled  # nothing happens before the confirmation
    app.checkbox(key="confirm-rollback").check().run()
    app.button(key="rollback").click().run()
    assert "champion` is now version 1" in app.success[0].value
    client = registry.client(model_env)
    assert registry.get_alias(client, "ui-model", "champion").version == 1  # type: ignore[union-attr]
    registry.rollback(client, "ui-model")  # back to 2 for the other tests


def test_empty_project_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IAC_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path / "state"))
    app = open_page("model", TIMEOUT).run()
    assert not app.exception
    infos = " ".join(i.value for i in app.info)
    assert "No `champion` yet" in infos and "No drift report yet" in infos
