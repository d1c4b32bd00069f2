"""Model page: champion and previous with metrics, charts from the drift history, a
rollback that needs a confirmation, and the serving traffic (estimated vs realised
accuracy, label coverage, label status) when the loop learns from served predictions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

from ia_continu.data.storage.migrate import migrate
from ia_continu.training import registry
from tests.ui.conftest import open_page
from tests.utils.history import store_cycles
from tests.utils.serving import store_labels, store_serving_reports

TIMEOUT = 60


def _history(data_dir: Path) -> None:
    engine = migrate(f"sqlite:///{(data_dir / 'ia_continu.db').resolve()}")
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
    migrate(f"sqlite:///{tmp_path / 'state' / 'ia_continu.db'}")  # as the bootstrap does
    return uri


@pytest.fixture
def champion_tags(model_env: str) -> Iterator[None]:
    """Version 2 carries the tags a promotion writes since issue 12; removed afterwards
    (the registry is shared by the session)."""
    client = registry.client(model_env)
    tags = {"validation_accuracy": "0.912345", "validation_rows": "336", "window": "last_8"}
    for key, value in tags.items():
        client.set_model_version_tag("ui-model", "2", key, value)
    yield
    for key in tags:
        client.delete_model_version_tag("ui-model", "2", key)


def test_aliases_charts_and_rollback(model_env: str, champion_tags: None, tmp_path: Path) -> None:
    _history(tmp_path / "state")
    app = open_page("model", TIMEOUT).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    headers = [h.value for h in app.subheader]
    assert "champion: version 2" in headers and "previous: version 1" in headers
    assert {"Accuracy per batch", "Drift statistic per feature", "Batches ingested"} <= set(headers)
    captions = [c.value for c in app.caption]
    assert "validation accuracy 0.912 on 336 rows · window `last_8`" in captions
    charts = app.get("vega_lite_chart")
    assert len(charts) == 2  # accuracy (with its reference) + drift heatmap
    accuracy_chart = json.loads(charts[0].proto.spec)
    fields = {layer["encoding"]["y"]["field"] for layer in accuracy_chart["layer"][:2]}
    assert fields == {"accuracy", "reference_accuracy"}
    assert app.metric[0].value == "3 batches"
    assert "Serving traffic" in headers  # the section says why it is empty
    assert any("No serving report yet" in i.value for i in app.info)

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
    migrate(f"sqlite:///{tmp_path / 'state' / 'ia_continu.db'}")  # the bootstrap ran, nothing else
    app = open_page("model", TIMEOUT).run()
    assert not app.exception
    infos = " ".join(i.value for i in app.info)
    assert "No `champion` yet" in infos and "No drift report yet" in infos
    assert "No serving report yet" in infos


def test_versions_registered_before_issue_12_describe_what_they_have() -> None:
    from ui.registry_view import AliasInfo

    bare = AliasInfo("previous", 1, None, None, {}, None)
    assert bare.describe() == ""
    old = AliasInfo("previous", 1, None, 0.8, {}, None)
    assert old.describe() == "validation accuracy 0.800"


def _chart_data(proto: Any) -> pd.DataFrame:
    """The one data set Streamlit sent with an Altair chart (Arrow IPC bytes)."""
    (dataset,) = proto.datasets
    return convert_arrow_bytes_to_pandas_df(dataset.data.data)


def test_serving_traffic_estimated_vs_realised_and_label_status(
    model_env: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "state"
    _history(data_dir)
    engine = migrate(f"sqlite:///{(data_dir / 'ia_continu.db').resolve()}")
    store_serving_reports(
        engine, [(80, 0.84, 0.83, False), (40, 0.78, 0.75, True), (0, 0.7, None, False)]
    )
    store_labels(engine, served=30, labelled=12)
    app = open_page("model", TIMEOUT).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert "Serving traffic" in [h.value for h in app.subheader]
    assert not any("No serving report yet" in i.value for i in app.info)
    elements = app.get("vega_lite_chart")
    charts = [json.loads(c.proto.spec) for c in elements]
    assert len(charts) == 4  # accuracy, drift heatmap, serving accuracy, label coverage
    serving, coverage = charts[2], charts[3]
    band, estimated, realised, reference, drifts = serving["layer"]
    assert estimated["encoding"]["y"]["field"] == "estimated_accuracy"
    assert band["mark"]["type"] == "area"
    assert (band["encoding"]["y"]["field"], band["encoding"]["y2"]["field"]) == (
        "estimated_lower",
        "estimated_upper",
    )
    assert realised["encoding"]["y"]["field"] == "realised_accuracy"
    assert reference["encoding"]["y"]["field"] == "reference_accuracy"
    assert drifts["mark"]["type"] == "rule"
    # The charts carry the stored reports, oldest first.
    rows = _chart_data(elements[2].proto)
    assert rows["estimated_accuracy"].tolist() == [0.84, 0.78, 0.7]
    assert rows["realised_accuracy"].tolist()[:2] == [0.83, 0.75]
    assert rows["realised_accuracy"].isna().tolist() == [False, False, True]
    assert coverage["encoding"]["y"]["field"] == "label_coverage"
    assert _chart_data(elements[3].proto)["label_coverage"].tolist() == [0.8, 0.4, 0.0]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["served"] == "30" and metrics["labelled"] == "12"
    assert metrics["unlabelled"] == "18"
    assert metrics["quarantined: unknown_id"] == "1"  # the resolved one is not counted
    assert metrics["quarantined: conflict"] == "1" and metrics["quarantined: invalid"] == "3"
