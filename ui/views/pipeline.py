"""Pipeline page: start flow runs through the Prefect API, watch recent runs, pause or
resume the loop's schedule (its interval read from the deployment)."""

from __future__ import annotations

from functools import partial
from typing import Any

import streamlit as st

from ia_continu.settings import get_settings
from ui import prefect_ops
from ui.auth import require_login

settings = require_login()
deployments = prefect_ops.deployments_for(settings.deployment_suffix)
scheduled = deployments["continuous_training"]
st.title("Pipeline")


@st.cache_data(ttl=settings.cache_seconds, show_spinner=False)
def _runs(limit: int) -> list[dict[str, Any]]:
    return prefect_ops.call(
        partial(prefect_ops.recent_runs, limit), settings.timeout_seconds, settings.prefect_api_url
    )


st.subheader("Start a flow run")
force = st.checkbox(
    "Force retrain", help="continuous_training and detect_drift: retrain even without drift"
)
columns = st.columns(len(deployments))
for column, (label, deployment) in zip(columns, deployments.items(), strict=True):
    parameters: dict[str, Any] = {}
    if label in ("continuous_training", "detect_drift"):
        parameters["force_retrain"] = force
    elif label == "retrain":
        parameters["trigger"] = "manual"
    if column.button(f"Run {label}", key=f"run-{label}", use_container_width=True):
        try:
            with st.spinner(f"starting {label}…"):
                started = prefect_ops.call(
                    partial(prefect_ops.start_run, deployment, parameters),
                    settings.timeout_seconds,
                    settings.prefect_api_url,
                )
        except prefect_ops.PrefectUnavailable as exc:
            st.error(f"{label}: {exc} (a run may still have been created: see Recent flow runs)")
        else:
            _runs.clear()
            url = f"{settings.prefect_ui_url}/flow-runs/flow-run/{started.id}"
            st.success(f"Started {started.deployment}: [{started.name}]({url})")

st.subheader("Schedule")
try:
    paused, interval = prefect_ops.call(
        partial(prefect_ops.schedule_state, scheduled),
        settings.timeout_seconds,
        settings.prefect_api_url,
    )
except prefect_ops.PrefectUnavailable as exc:
    st.warning(f"Schedule state unknown: {exc}")
else:
    # The deployment's schedule is the truth; IAC_SCHEDULE_INTERVAL_SECONDS is what the
    # bootstrap deploys, shown when the deployment has no interval schedule.
    if interval is not None:
        rhythm = f"every {interval:g} s"
    else:
        rhythm = (
            f"every {get_settings().schedule_interval_seconds} s once deployed by the "
            "bootstrap (IAC_SCHEDULE_INTERVAL_SECONDS; the deployment has no interval schedule)"
        )
    st.write(f"`{scheduled}` {rhythm}: **{'paused' if paused else 'active'}**")
    if st.button("Resume schedule" if paused else "Pause schedule", key="schedule"):
        try:
            prefect_ops.call(
                partial(prefect_ops.set_schedule_paused, not paused, scheduled),
                settings.timeout_seconds,
                settings.prefect_api_url,
            )
        except prefect_ops.PrefectUnavailable as exc:
            st.error(str(exc))
        else:
            st.rerun()

st.subheader("Recent flow runs")
try:
    rows = _runs(50)
except prefect_ops.PrefectUnavailable as exc:
    st.error(f"Cannot list flow runs: {exc}")
else:
    if not rows:
        st.info("No flow run yet.")
    else:
        # A markdown table, not st.dataframe: plain HTML, so links work and the rows are
        # readable by the browser test (st.dataframe draws on a canvas).
        lines = [
            "| flow run | deployment | state | started (UTC) | duration (s) |",
            "|---|---|---|---|---|",
        ]
        for run in rows:
            url = f"{settings.prefect_ui_url}/flow-runs/flow-run/{run['id']}"
            when = f"{run['started']:%Y-%m-%d %H:%M:%S}" if run["started"] else ""
            lines.append(
                f"| [{run['name']}]({url}) | {run['deployment']} | {run['state']} | {when} | {run['duration_s']} |"
            )
        st.markdown("\n".join(lines))
    if st.button("Refresh", key="refresh"):
        _runs.clear()
        st.rerun()
