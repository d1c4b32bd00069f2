"""Predict page: a form built from the served model's signature, and CSV batch
predictions with a download of the results, all through the prediction API."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui import api_client
from ui.auth import require_login

settings = require_login()
st.title("Predict")

try:
    model = api_client.model_info(settings)
except api_client.ApiError as exc:
    st.error(str(exc))
    st.stop()
st.caption(
    f"Served: `{model['name']}` version {model['version']} ({model['alias']}, {model['runtime']})"
)
columns: list[dict[str, Any]] = model["input_columns"]

st.subheader("One row")
with st.form("row"):
    row: dict[str, Any] = {}
    for column in columns:
        name, kind = column["name"], column["type"]
        if kind in ("double", "float"):
            row[name] = st.number_input(name, value=0.0, format="%.6f", key=f"in-{name}")
        elif kind in ("long", "integer"):
            row[name] = int(st.number_input(name, value=0, step=1, key=f"in-{name}"))
        elif kind == "boolean":
            row[name] = st.checkbox(name, key=f"in-{name}")
        else:
            row[name] = st.text_input(name, key=f"in-{name}")
    submitted = st.form_submit_button("Predict")
if submitted:
    try:
        answer = api_client.predict_row(settings, row)
    except api_client.ApiError as exc:
        st.error(str(exc))
    else:
        probability = answer["probability"]
        shown = f" (probability {probability:.3f})" if probability is not None else ""
        st.success(
            f"Prediction: **{answer['prediction']}**{shown} · model version {answer['model_version']}"
        )

st.subheader("CSV batch")
upload = st.file_uploader("CSV with the input columns", type=["csv"])
if upload is not None:
    kinds = {c["name"]: c["type"] for c in columns}
    dtypes = {n: "string" for n, k in kinds.items() if k == "string"}
    try:
        frame = pd.read_csv(upload, dtype=dtypes)
    except (ValueError, pd.errors.ParserError) as exc:
        st.error(f"not a readable CSV: {exc}")
        st.stop()
    missing = [n for n in kinds if n not in frame.columns]
    if missing:
        st.error(f"missing columns: {', '.join(missing)}")
        st.stop()
    try:
        with st.spinner(f"predicting {len(frame)} rows…"):
            result = api_client.predict_frame(settings, frame[list(kinds)].astype(object))
    except api_client.ApiError as exc:
        st.error(str(exc))
    else:
        st.dataframe(result.head(100), use_container_width=True)
        st.download_button(
            "Download predictions (CSV)",
            result.to_csv(index=False).encode(),
            file_name="predictions.csv",
            mime="text/csv",
        )
