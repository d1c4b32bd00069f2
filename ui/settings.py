"""Settings of the console, read from ``IAC_UI_*`` variables (Prefect's own
``PREFECT_API_URL`` says where the Prefect API is)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ia_continu.auth.passwords import check_encoded
from ia_continu.settings import setting_problems


class UiSettings(BaseSettings):
    """Knobs of the console. Environment variable = ``IAC_UI_`` + field name, upper case."""

    model_config = SettingsConfigDict(
        env_prefix="IAC_UI_", env_file=".env", extra="ignore", validate_default=True
    )

    auth: Literal["password", "disabled"] = Field(
        "password", description="'disabled' only for local development."
    )
    password_hash: SecretStr | None = Field(
        None, description="From `ia-continu ui-password`; never the password itself."
    )
    prefect_api_url: str | None = Field(
        None, description="Prefect API the console drives; default: Prefect's PREFECT_API_URL."
    )
    prefect_ui_url: str = Field("http://127.0.0.1:4200", description="Base of run links.")
    api_url: str = Field("http://127.0.0.1:8000", description="The prediction API.")
    api_token: SecretStr | None = Field(None, description="Bearer token for the prediction API.")
    api_token_file: Path | None = Field(
        None, description="File holding the token (read when IAC_UI_API_TOKEN is unset)."
    )
    deployment_suffix: str = Field(
        "",
        pattern=r"^(-[a-z0-9]+)?$",
        description="Suffix of the deployments the console drives: '' (process pool) or "
        "'-docker' (the Docker pool's `*-docker` deployments in prefect.yaml).",
    )
    timeout_seconds: float = Field(
        1.0, gt=0, le=30, description="Longest wait on a backend before the page says so."
    )
    cache_seconds: float = Field(5.0, ge=0, description="How long lists and charts are cached.")
    history_limit: int = Field(2_000, ge=10, description="Drift reports shown at most.")

    @model_validator(mode="after")
    def _token_from_file(self) -> UiSettings:
        if (
            self.api_token is None
            and self.api_token_file is not None
            and self.api_token_file.is_file()
        ):
            self.api_token = SecretStr(self.api_token_file.read_text().strip())
        return self

    @field_validator("password_hash")
    @classmethod
    def _scrypt_only(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked in full here, not at login: a hash that could never match would
        # otherwise look like a wrong password forever.
        if value is not None:
            check_encoded(value.get_secret_value())
        return value


def invalid_settings_message(error: ValidationError, prefix: str) -> str:
    """One line naming each bad variable (``prefix`` + field name, upper case) and why,
    never the value (see :func:`ia_continu.settings.setting_problems`)."""
    return "; ".join(setting_problems(error, prefix))


@lru_cache
def get_ui_settings() -> UiSettings:
    """Process-wide console settings; tests call ``get_ui_settings.cache_clear()``."""
    return UiSettings()
