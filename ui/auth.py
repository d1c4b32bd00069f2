"""The console's login gate: the operator password, checked against its scrypt hash.

Every page script starts with :func:`require_login`, and ``ui/app.py`` registers the pages
(``st.navigation``) only once the operator is logged in: a page reached any other way
(a URL, Streamlit's legacy ``pages/`` directory mode, a test harness) shows the login form
and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from loguru import logger
from pydantic import ValidationError

from ia_continu.auth.passwords import verify_password
from ui.settings import UiSettings, get_ui_settings, invalid_settings_message

T = TypeVar("T")


def settings_or_stop(factory: Callable[[], T], prefix: str) -> T:
    """Settings from ``factory``; on an invalid variable, one error line on the page and
    in the log naming it (``prefix`` + field name), then the script run stops.

    No traceback, no file path and no value reaches the page (values may be secrets).

    Raises:
        streamlit.runtime.scriptrunner.StopException: through ``st.stop()``, on invalid
            settings (Streamlit ends the run quietly).
    """
    try:
        return factory()
    except ValidationError as exc:
        message = f"Invalid console setting: {invalid_settings_message(exc, prefix)}"
        logger.error(message)
        st.error(f"{message}. Fix it and restart the console.")
        st.stop()


def logged_in(settings: UiSettings) -> bool:
    """Show the login form until the right password is given; True once logged in.

    With ``IAC_UI_AUTH=disabled`` the console is open (local development). A wrong
    password is logged (without what was typed) so the operator sees guessing.
    """
    if settings.auth == "disabled" or st.session_state.get("authenticated"):
        return True
    st.title("IA Continu")
    if settings.password_hash is None:
        st.error(
            "No operator password is configured: set IAC_UI_PASSWORD_HASH "
            "(`ia-continu ui-password`), or IAC_UI_AUTH=disabled for local development."
        )
        return False
    with st.form("login"):
        password = st.text_input("Operator password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if verify_password(password, settings.password_hash.get_secret_value()):
            st.session_state["authenticated"] = True
            st.rerun()
        logger.warning("console login refused: wrong operator password")
        st.error("Wrong password.")
    return False


def require_login() -> UiSettings:
    """First line of every page: the console settings once the operator is logged in;
    otherwise the login form (or the settings error) is shown and the run stops.

    Raises:
        streamlit.runtime.scriptrunner.StopException: through ``st.stop()``, when not
            logged in or when an ``IAC_UI_*`` variable is invalid.
    """
    settings = settings_or_stop(get_ui_settings, "IAC_UI_")
    if not logged_in(settings):
        st.stop()
    return settings
