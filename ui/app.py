"""Entry point: `streamlit run ui/app.py`. Login, then the three pages."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ia_continu.logs import configure_logging
from ia_continu.settings import get_settings
from ui.auth import logged_in
from ui.settings import get_ui_settings

PAGES = Path(__file__).parent / "pages"


@st.cache_resource
def _logging() -> bool:
    """The project's loguru configuration (IAC_LOG_*), once per console process."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, settings.log_dir)
    return True


_logging()

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
