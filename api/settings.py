"""Settings of the prediction API, read from ``IAC_API_*`` environment variables.

The model, registry and database come from the shared :class:`ia_continu.settings.Settings`
(``IAC_MLFLOW_TRACKING_URI``, ``IAC_REGISTERED_MODEL_NAME``, ``IAC_DATABASE_URL``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Knobs of the API. Environment variable = ``IAC_API_`` + field name, upper case."""

    model_config = SettingsConfigDict(
        env_prefix="IAC_API_", env_file=".env", extra="ignore", validate_default=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="uvicorn worker processes (set PROMETHEUS_MULTIPROC_DIR if > 1).",
    )
    alias: str = Field("champion", description="Registry alias the API serves.")
    reload_interval_seconds: float = Field(
        5.0, gt=0, le=3600, description="Seconds between two polls of the alias."
    )
    max_batch_rows: int = Field(10_000, ge=1, le=1_000_000)
    auth: Literal["token", "disabled"] = Field(
        "token", description="'disabled' only for local development: /predict is then open."
    )
    token_cache_seconds: float = Field(
        5.0, ge=0, description="A revoked token keeps working at most this long."
    )
    prediction_log: bool = True
    prediction_log_queue: int = Field(10_000, ge=1, description="Requests waiting to be written.")
    prediction_log_flush_seconds: float = Field(
        0.2,
        gt=0,
        description="Write interval; short intervals keep each write (and its GIL hold) small.",
    )
    prediction_log_max_age_hours: float = Field(
        168.0,
        ge=0,
        description="Logged predictions older than this are deleted (0: no age limit).",
    )
    prediction_log_max_rows: int = Field(
        1_000_000,
        ge=0,
        description="Logged predictions kept, the newest; older ones deleted (0: no limit).",
    )
    prediction_log_retention_seconds: float = Field(
        60.0, gt=0, le=86_400, description="Seconds between two retention passes."
    )
    onnx: bool = Field(
        True,
        description="Serve linear pipelines through onnxruntime when the conversion is exact.",
    )
    offload_rows: int = Field(
        512, ge=1, description="Batches this large are predicted in a thread, off the event loop."
    )
    offload_bytes: int = Field(
        64 * 1024,
        ge=0,
        description="Bodies this large are parsed and validated in a thread, off the event loop.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="Largest request body, in bytes (413 above it, refused before it is read "
        "whole). 10 MiB holds IAC_API_MAX_BATCH_ROWS=10,000 rows of up to 1 KiB of JSON each.",
    )
    log_level: str = "INFO"
    log_json: bool = False
    log_dir: Path | None = None
    access_log: bool = Field(True, description="One log line per request.")
    registry_timeout_seconds: float = Field(
        3.0, gt=0, description="HTTP timeout of each registry call made by the reload loop."
    )


@lru_cache
def get_api_settings() -> ApiSettings:
    """Process-wide API settings; tests call ``get_api_settings.cache_clear()``."""
    return ApiSettings()
