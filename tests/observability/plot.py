"""Draw the dashboard's series from Prometheus with matplotlib (Grafana cannot run here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

DASHBOARD = Path(__file__).resolve().parents[2] / "infra/grafana/dashboards/ia-continu.json"


def _range(prom: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{prom}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": 1},
        timeout=10,
    ).json()
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _label(template: str, metric: dict[str, str]) -> str:
    for key, value in metric.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def plot_dashboard(prom: str, out: Path) -> None:
    """One subplot per non-row panel of the dashboard, same queries, last 2 minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = json.loads(DASHBOARD.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    now = httpx.get(f"{prom}/api/v1/query", params={"query": "time()"}, timeout=5).json()
    end = float(now["data"]["result"][0])
    start = end - 120
    columns = 3
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(15, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for target in panel["targets"]:
            for series in _range(prom, target["expr"], start, end):
                xs = [float(t) - end for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=_label(target["legendFormat"], series["metric"]))
        scale = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
        if scale.get("scaleDistribution", {}).get("type") == "log":
            ax.set_yscale("log")  # as Grafana draws it (the p-value panel)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel("seconds before the end of the test", fontsize=8)
        ax.tick_params(labelsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("IA Continu dashboard queries, evaluated by Prometheus (test run)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
