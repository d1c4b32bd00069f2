"""Model page: champion and previous with their metrics, rollback with confirmation, and
the loop over time: accuracy per batch against the champion's reference accuracy, with
retrains and promotions, drift per feature, batches ingested; and, when the loop learns
from served traffic, the champion's estimated accuracy (with its interval) against the
accuracy realised once labels arrived, the label coverage and the label status."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from ia_continu.data.storage.engine import get_engine
from ia_continu.loop import history
from ia_continu.settings import get_settings
from ui import registry_view
from ui.auth import require_login, settings_or_stop

settings = require_login()
core = settings_or_stop(get_settings, "IAC_")
registry_view.bound_mlflow_calls(settings.timeout_seconds)
st.title("Model")


@st.cache_data(ttl=settings.cache_seconds, show_spinner=False)
def _aliases() -> list[registry_view.AliasInfo]:
    return registry_view.aliases(core.mlflow_tracking_uri, core.registered_model_name)


@st.cache_data(ttl=settings.cache_seconds, show_spinner=False)
def _history(limit: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    engine = get_engine(core.resolved_database_url)
    return (
        history.drift_history(engine, limit),
        history.feature_drift(engine, limit),
        history.batches_ingested(engine),
    )


@st.cache_data(ttl=settings.cache_seconds, show_spinner=False)
def _serving(limit: int) -> tuple[pd.DataFrame, history.LabelStatus]:
    engine = get_engine(core.resolved_database_url)
    return history.serving_history(engine, limit), history.label_status(engine)


try:
    found = _aliases()
except Exception as exc:  # any MLflow failure: say it, keep the rest of the page
    st.error(f"MLflow registry unreachable at {core.mlflow_tracking_uri}: {type(exc).__name__}")
    found = []
if not found:
    st.info(f"No `champion` yet for `{core.registered_model_name}`: the first run registers one.")
columns = st.columns(2)
for column, info in zip(columns, found, strict=False):
    with column:
        st.subheader(f"{info.alias}: version {info.version}")
        registered = (
            datetime.fromtimestamp(info.registered_at / 1000, UTC) if info.registered_at else None
        )
        st.caption(
            f"run `{info.run_id}` · registered {registered:%Y-%m-%d %H:%M:%S} UTC"
            if registered
            else f"run `{info.run_id}`"
        )
        if info.describe():
            st.caption(info.describe())
        metrics = {k: round(v, 4) for k, v in sorted(info.metrics.items())}
        st.dataframe(pd.Series(metrics, name="value"), use_container_width=True)

if any(info.alias == "previous" for info in found):
    with st.expander("Roll back"):
        champion = next(i.version for i in found if i.alias == "champion")
        previous = next(i.version for i in found if i.alias == "previous")
        st.write(f"Moves `champion` from version {champion} back to version {previous}.")
        confirmed = st.checkbox(
            f"I confirm the rollback to version {previous}", key="confirm-rollback"
        )
        if st.button("Roll back", disabled=not confirmed, key="rollback"):
            try:
                version = registry_view.rollback(
                    core.mlflow_tracking_uri, core.registered_model_name
                )
            except Exception as exc:  # registry down or no previous: say it
                st.error(f"Rollback failed: {exc}")
            else:
                _aliases.clear()
                st.success(
                    f"`champion` is now version {version}; the API picks it up within seconds."
                )

st.subheader("Accuracy per batch")
try:
    drift, features, ingested = _history(settings.history_limit)
except Exception as exc:  # database unreachable
    st.error(f"Project database unreachable: {type(exc).__name__}: {exc}")
    st.stop()
if drift.empty:
    st.info("No drift report yet.")
else:
    base = alt.Chart(drift).encode(
        x=alt.X("batch_id:Q", title="batch", axis=alt.Axis(format="d", tickMinStep=1))
    )
    line = base.mark_line(point=True).encode(
        y=alt.Y("accuracy:Q", title="accuracy", scale=alt.Scale(zero=False)),
        tooltip=[
            "batch_id",
            "champion_version",
            "accuracy",
            "reference_accuracy",
            "p_value",
            "reason",
        ],
    )
    reference = base.mark_line(color="gray", strokeDash=[2, 2]).encode(
        y=alt.Y("reference_accuracy:Q", title="accuracy"),
        tooltip=["batch_id", "champion_version", "reference_accuracy"],
    )
    retrains = (
        base.transform_filter("datum.retrain")
        .mark_rule(color="orange", strokeDash=[4, 3])
        .encode(tooltip=["batch_id", "reason"])
    )
    promotions = (
        base.transform_filter("datum.promoted")
        .mark_rule(color="green", size=2)
        .encode(tooltip=["batch_id", "champion_version"])
    )
    st.altair_chart(line + reference + retrains + promotions, use_container_width=True)
    st.caption(
        "Grey dotted line: the champion's reference accuracy (its validation rows pooled with its "
        "first batches in service), which the concept-drift test compares each batch with. "
        "Orange dashes: retrain decided; green: first batch served by a newly promoted champion."
    )

st.subheader("Drift statistic per feature")
if features.empty:
    st.info("No data drift report yet.")
else:
    heatmap = (
        alt.Chart(features)
        .mark_rect()
        .encode(
            x=alt.X("batch_id:O", title="batch"),
            y=alt.Y("feature:N"),
            color=alt.Color(
                "statistic:Q", title="KS D / chi²", scale=alt.Scale(scheme="orangered")
            ),
            tooltip=["batch_id", "feature", "test", "statistic", "effect", "p_adjusted", "drifted"],
        )
    )
    st.altair_chart(heatmap, use_container_width=True)

st.subheader("Batches ingested")
if ingested.empty:
    st.info("No batch yet.")
else:
    for _, row in ingested.iterrows():
        st.metric(
            str(row["source"]),
            f"{int(row['batches'])} batches",
            f"{int(row['rows'])} rows",
            delta_color="off",
        )

st.subheader("Serving traffic")
try:
    serving, labels = _serving(settings.history_limit)
except Exception as exc:  # database unreachable
    st.error(f"Project database unreachable: {type(exc).__name__}: {exc}")
    st.stop()
if serving.empty:
    st.info(
        "No serving report yet: with `IAC_DATA_SOURCE=serving` each cycle estimates the "
        "champion's accuracy on the predictions the API served."
    )
else:
    # Stored times are naive UTC: a UTC scale shows them as such in any browser.
    when = alt.X("created_at:T", title="serving report (UTC)", scale=alt.Scale(type="utc"))
    reported = alt.Tooltip(
        "created_at:T", timeUnit="utcyearmonthdatehoursminutesseconds", title="report (UTC)"
    )
    base = alt.Chart(serving).encode(x=when)
    tooltip: list[alt.Tooltip | str] = [
        reported,
        "champion_version",
        alt.Tooltip("estimated_accuracy:Q", format=".3f"),
        alt.Tooltip("estimated_lower:Q", format=".3f"),
        alt.Tooltip("estimated_upper:Q", format=".3f"),
        alt.Tooltip("realised_accuracy:Q", format=".3f"),
        "realised_rows",
        "data_drift",
        "prediction_drift",
    ]
    band = base.mark_area(opacity=0.25).encode(
        y=alt.Y("estimated_lower:Q", title="accuracy", scale=alt.Scale(zero=False)),
        y2="estimated_upper:Q",
    )
    estimated = base.mark_line(point=True).encode(
        y=alt.Y("estimated_accuracy:Q", title="accuracy"), tooltip=tooltip
    )
    realised = (
        base.transform_filter("isValid(datum.realised_accuracy)")
        .mark_line(point=True, color="black")
        .encode(y=alt.Y("realised_accuracy:Q", title="accuracy"), tooltip=tooltip)
    )
    reference = base.mark_line(color="gray", strokeDash=[2, 2]).encode(
        y=alt.Y("reference_accuracy:Q", title="accuracy"),
        tooltip=["champion_version", "reference_accuracy"],
    )
    drifts = (
        base.transform_filter("datum.data_drift || datum.prediction_drift")
        .mark_rule(color="red", strokeDash=[4, 3])
        .encode(tooltip=tooltip)
    )
    st.altair_chart(band + estimated + realised + reference + drifts, use_container_width=True)
    st.caption(
        "Blue: the champion's accuracy estimated from its calibrated probabilities (CBPE), "
        "with its interval shaded; black: the accuracy realised on the same window once its "
        "labels arrived (after `IAC_LABEL_DELAY`); grey dotted: the accuracy on the "
        "champion's calibration rows. Red dashes: the served inputs or predictions drifted."
    )
    coverage = (
        alt.Chart(serving)
        .mark_line(point=True)
        .encode(
            x=when,
            y=alt.Y(
                "label_coverage:Q",
                title="label coverage",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            tooltip=[
                reported,
                "n_rows",
                "labelled_rows",
                alt.Tooltip("label_coverage:Q", format=".1%"),
            ],
        )
    )
    st.altair_chart(coverage, use_container_width=True)
    st.caption("Share of each serving window's predictions that had a label when it was read.")
    served = [(name, labels[name]) for name in ("served", "labelled", "unlabelled")]
    quarantined = [(f"quarantined: {k}", n) for k, n in labels["quarantined"].items()]
    for counts in (served, quarantined):
        for column, (name, count) in zip(st.columns(len(counts)), counts, strict=True):
            with column:
                st.metric(name, f"{count:,}")
    st.caption(
        "Quarantined labels are kept aside, not joined: `unknown_id` (no served prediction "
        "with that id yet, retried at each ingestion), `conflict` (the prediction already has "
        "another label), `invalid` (missing or malformed id or label)."
    )
