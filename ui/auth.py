"""The console's login gate: the operator password, checked against its scrypt hash."""

from __future__ import annotations

import streamlit as st

from ia_continu.passwords import verify_password
from ui.settings import UiSettings


def logged_in(settings: UiSettings) -> bool:
    """Show the login form until the right password is given; True once logged in.

    With ``IAC_UI_AUTH=disabled`` the console is open (local development).
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
        st.error("Wrong password.")
    return False
