"""Entry point: `streamlit run ui/app.py`. Login, then the three pages."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui.auth import logged_in
from ui.settings import get_ui_settings

PAGES = Path(__file__).parent / "pages"

st.set_page_config(page_title="IA Continu", layout="wide")
if logged_in(get_ui_settings()):
    navigation = st.navigation(
        [
            st.Page(str(PAGES / "pipeline.py"), title="Pipeline", default=True),
            st.Page(str(PAGES / "model.py"), title="Model"),
            st.Page(str(PAGES / "predict.py"), title="Predict"),
        ]
    )
    navigation.run()
