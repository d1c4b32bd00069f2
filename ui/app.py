"""Entry point: `streamlit run ui/app.py`. Login, then the three pages.

The page scripts live in ``ui/views/``, never in a ``pages/`` directory beside this file:
with one, Streamlit runs in its legacy multipage mode until the first ``st.navigation``
call in the process, and serves each script of ``pages/`` at its own URL without running
this one, so without the login. The pages are registered below only once the operator is
logged in, and each page checks the login itself as well (``ui.auth.require_login``).
Streamlit's own settings (no tracebacks on the page, no developer toolbar) are in
``ui/.streamlit/config.toml``, which Streamlit reads beside this script.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ia_continu.logs import configure_logging
from ia_continu.settings import get_settings
from ui.auth import logged_in, settings_or_stop
from ui.settings import get_ui_settings

VIEWS = Path(__file__).parent / "views"


@st.cache_resource
def _logging() -> bool:
    """The project's loguru configuration (IAC_LOG_*), once per console process."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, settings.log_dir)
    return True


st.set_page_config(page_title="IA Continu", layout="wide")
settings_or_stop(get_settings, "IAC_")
_logging()
if logged_in(settings_or_stop(get_ui_settings, "IAC_UI_")):
    navigation = st.navigation(
        [
            st.Page(str(VIEWS / "pipeline.py"), title="Pipeline", default=True),
            st.Page(str(VIEWS / "model.py"), title="Model"),
            st.Page(str(VIEWS / "predict.py"), title="Predict"),
        ]
    )
    navigation.run()
