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
        "Drift statistic per feature",
        "Requests per second by status",
        "Latency percentiles (/predict)",
        "Model version over time",
    } <= titles
    names = {a["name"] for a in board["annotations"]["list"]}
    assert "Retrains" in names


def test_provider_points_where_compose_mounts_the_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/ia-continu.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = (ROOT / "compose.yaml").read_text()
    assert f"./infra/grafana/dashboards:{path}:ro" in compose
