"""The Grafana dashboard and provisioning files, validated structurally (Grafana itself
cannot be pulled or installed here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "ia-continu.json"
#: What the serving cycles push (issue 13), each drawn by the "Serving traffic" row.
SERVING_METRICS = {
    "iac_estimated_accuracy",
    "iac_estimated_accuracy_lower",
    "iac_estimated_accuracy_upper",
    "iac_realised_accuracy",
    "iac_label_coverage",
    "iac_serving_drift",
    "iac_prediction_drift",
}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def datasource_uids() -> set[str]:
    config = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    return {d["uid"] for d in config["datasources"]}


def test_is_a_file_provisioned_dashboard_not_an_import_wrapper(board: dict[str, Any]) -> None:
    # The API-import format wraps it in {"dashboard": ..., "overwrite": ...}; file
    # provisioning wants the dashboard model itself, with a stable uid and no numeric id.
    assert "dashboard" not in board and "overwrite" not in board
    assert board["uid"] == "ia-continu" and board["title"] == "IA Continu"
    assert board.get("id") is None
    assert isinstance(board["schemaVersion"], int)


def test_panel_ids_are_unique_and_panels_do_not_overlap(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_datasource_references_resolve(board: dict[str, Any], datasource_uids: set[str]) -> None:
    refs = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        refs.append(panel["datasource"])
        refs += [t["datasource"] for t in panel["targets"]]
    refs += [a["datasource"] for a in board["annotations"]["list"] if not a.get("builtIn")]
    for ref in refs:
        assert ref["type"] == "prometheus" and ref["uid"] in datasource_uids, ref


def test_every_panel_has_a_query(board: dict[str, Any]) -> None:
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            # Braces, brackets and parentheses balance (promtool checks the rest at run time).
            expr = re.sub(r'"[^"]*"', '""', target["expr"])
            for opening, closing in ("()", "[]", "{}"):
                assert expr.count(opening) == expr.count(closing), target["expr"]


def test_the_panels_the_operator_needs(board: dict[str, Any]) -> None:
    titles = {p["title"] for p in board["panels"]}
    assert {
        "Since last successful cycle",
        "Accuracy over time",
        "Concept drift p-value",
        "Drift statistic per feature",
        "Requests per second by status",
        "Latency percentiles (/predict)",
        "Model version over time",
        "Serving traffic",
        "Estimated vs realised accuracy",
        "Label coverage",
        "Serving drift",
    } <= titles
    names = {a["name"] for a in board["annotations"]["list"]}
    assert "Retrains" in names


def _produced_metrics() -> set[str]:
    """Names of every metric family the flows push and the API exports."""
    from prometheus_client import REGISTRY, CollectorRegistry

    import api.metrics  # noqa: F401  (registers the API's metrics on the default registry)
    from ia_continu.loop import flow_metrics
    from ia_continu.loop.results import DriftSummary, RetrainOutcome, ServingSummary

    registry = CollectorRegistry()
    summary = DriftSummary.model_validate(
        {
            "id": "r",
            "batch_id": 3,
            "champion_version": 2,
            "data_drift_new": True,
            "retrain": True,
            "trigger": "drift",
            "reason": "concept drift",
            "data_drift": True,
            "concept_drift": True,
            "drifted_features": ["x"],
            "champion_accuracy": 0.7,
            "reference_accuracy": 0.8,
            "concept_drift_p_value": 0.001,
            "features": [
                {"feature": "x", "test": "ks", "statistic": 0.3, "p_adjusted": 0.01}
                | {"effect": 0.2, "drifted": True}
            ],
        }
    )
    flow_metrics.drift_metrics(summary, registry)
    outcome = RetrainOutcome(
        promoted=True,
        challenger_accuracy=0.8,
        champion_accuracy=0.7,
        reason="better",
        trigger="drift",
    )
    flow_metrics.retrain_metrics(outcome, registry)
    flow_metrics.champion_metrics(registry, 2)
    flow_metrics.run_metrics(registry, 1.0, succeeded=True)
    flow_metrics.notification_metrics(registry, {"delivered": 1}, 0)
    serving = ServingSummary(
        source="serving:m",
        status="reported",
        estimated_accuracy=0.8,
        estimated_lower=0.75,
        estimated_upper=0.85,
        realised_accuracy=0.79,
        label_coverage=0.4,
        data_drift=True,
        prediction_drift=False,
    )
    flow_metrics.serving_metrics(serving, registry)
    failed = CollectorRegistry()
    flow_metrics.run_metrics(failed, 1.0, succeeded=False)
    families = [*registry.collect(), *failed.collect(), *REGISTRY.collect()]
    return {family.name for family in families}


def test_every_iac_metric_queried_is_one_the_project_exports(board: dict[str, Any]) -> None:
    """Dashboard queries and alert rules name only metrics that exist, so a metric renamed
    or removed in ``ia_continu.loop.flow_metrics`` (as ``iac_accuracy_floor`` was) cannot leave
    a panel or an alert silently empty."""
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    rules = yaml.safe_load((ROOT / "infra" / "prometheus" / "alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    queried = {name for expr in exprs for name in re.findall(r"\biac_[a-z0-9_]+", expr)}
    produced = _produced_metrics()
    suffixes = r"_(total|bucket|count|sum)$"
    unknown = {n for n in queried if n not in produced and re.sub(suffixes, "", n) not in produced}
    assert not unknown, unknown
    assert {"iac_champion_reference_accuracy", "iac_concept_drift_p_value"} <= queried
    assert SERVING_METRICS <= queried


def test_serving_band_fills_between_its_own_bounds(board: dict[str, Any]) -> None:
    """The interval band is Grafana's ``fillBelowTo`` from the upper to the lower series:
    both must be display names of the panel's own queries, or the band is not drawn."""
    panel = next(p for p in board["panels"] if p["title"] == "Estimated vs realised accuracy")
    legends = {t["legendFormat"] for t in panel["targets"]}
    fills = [
        (o["matcher"]["options"], prop["value"])
        for o in panel["fieldConfig"]["overrides"]
        for prop in o["properties"]
        if prop["id"] == "custom.fillBelowTo"
    ]
    assert fills == [("upper bound", "lower bound")]
    assert {"upper bound", "lower bound", "estimated", "realised"} == legends
    exprs = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
    assert exprs["upper bound"].startswith("iac_estimated_accuracy_upper{")
    assert exprs["lower bound"].startswith("iac_estimated_accuracy_lower{")


def test_serving_panels_sit_in_their_row(board: dict[str, Any]) -> None:
    """Grafana gives a non-collapsed row the panels that follow it, up to the next row."""
    titles = [p["title"] for p in board["panels"]]
    start = titles.index("Serving traffic")
    following = titles[start + 1 :]
    rows = [p["title"] for p in board["panels"][start + 1 :] if p["type"] == "row"]
    mine = following[: following.index(rows[0])] if rows else following
    assert set(mine) == {"Estimated vs realised accuracy", "Label coverage", "Serving drift"}


def test_provider_points_where_compose_mounts_the_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/ia-continu.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = (ROOT / "compose.yaml").read_text()
    assert f"./infra/grafana/dashboards:{path}:ro" in compose
