"""Configuration of the continuous-training loop, read from ``IAC_*`` environment variables.

Every setting has a default that runs the embedded demo (Elec2 replay, local SQLite,
local MLflow server). Secrets are :class:`~pydantic.SecretStr` and never printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PACKAGED_ELEC2 = Path(__file__).parent / "data" / "datasets" / "electricity.csv"

SyntheticMode = Literal["stable", "covariate_shift", "concept_drift"]
EstimatorName = Literal["logistic_regression", "random_forest", "hist_gradient_boosting"]


class Settings(BaseSettings):
    """All knobs of IA Continu. Environment variable = ``IAC_`` + field name, upper case.

    Raises:
        pydantic.ValidationError: on an invalid value; the message names the field
            (``batch_size``); ``ia-continu check`` and the bootstrap print it as the
            variable (``IAC_BATCH_SIZE``).
    """

    model_config = SettingsConfigDict(
        env_prefix="IAC_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- where state lives -------------------------------------------------------------
    data_dir: Path = Field(Path(".iac"), description="Local state: SQLite files, artifacts.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the project database; default SQLite in data_dir."
    )
    prediction_log_database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the API's prediction log (migrated like the project "
        "database); default: the project database.",
    )
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    mlflow_http_max_retries: int = Field(
        2, ge=0, le=10, description="MLflow client retries per HTTP call in flows (MLflow: 7)."
    )
    mlflow_http_timeout_seconds: int = Field(
        10, ge=1, le=600, description="MLflow client timeout per HTTP call in flows (MLflow: 120)."
    )
    mlflow_experiment: str = "ia-continu"
    registered_model_name: str = "ia-continu-classifier"

    # --- data source ---------------------------------------------------------------------
    data_source: Literal["synthetic", "replay", "serving"] = Field(
        "replay",
        description="Where batches come from. serving: the API's labelled predictions "
        "(ia_continu.data.serving_source), after IAC_SERVING_SEED_BATCHES seed batches.",
    )
    batch_size: int = Field(336, ge=10, le=1_000_000, description="Rows per batch.")
    # synthetic
    synthetic_mode: SyntheticMode = "concept_drift"
    synthetic_seed: int = 42
    synthetic_period_batches: int = Field(
        5, ge=1, description="Batches per period; odd periods are shifted or drifted."
    )
    synthetic_label_noise: float = Field(0.05, ge=0.0, lt=0.5)
    # replay
    replay_path: Path = PACKAGED_ELEC2
    replay_target: str = "class"
    replay_time_column: str | None = Field(
        "date",
        description="Column sorted on (numbers or dates). Empty: no time column, the file "
        "order is the time order.",
    )
    replay_categorical_columns: Annotated[list[str], NoDecode] = ["day"]
    replay_loop: bool = Field(True, description="Start over when the stream is exhausted.")
    replay_classes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Known labels of the target (comma list); a batch with another is "
        "quarantined. Empty: any label.",
    )
    # serving: the loop learns from what the API served, once ground truth has arrived
    serving_seed_source: Literal["synthetic", "replay"] = Field(
        "replay",
        description="With IAC_DATA_SOURCE=serving: the source of the seed batches the first "
        "champion is trained on; it also names the stream's columns (features, target).",
    )
    serving_seed_batches: int = Field(
        1, ge=1, description="Batches taken from the seed source before serving traffic."
    )
    label_delay: timedelta = Field(
        timedelta(seconds=60),
        description="How long ground truth may take to arrive (seconds or ISO 8601, e.g. "
        "PT2H): a serving batch only holds predictions at least this old.",
    )
    serving_window_rows: int | None = Field(
        None,
        ge=10,
        description="Newest served predictions (labelled or not) compared with the "
        "champion's reference window; unset: IAC_BATCH_SIZE.",
    )
    served_retention_hours: float = Field(
        168,
        ge=0,
        description="Served predictions already batched are deleted from served_predictions "
        "after this many hours (the API's prediction log keeps its own); 0 keeps them all.",
    )
    # ground truth (flows/ingest_labels.py, ia_continu.data.labels)
    labels_dir: Path | None = Field(
        None,
        description="Inbox of label files (CSV or Parquet); unset: IAC_DATA_DIR/labels.",
    )
    labels_sql_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL queried for ground truth (with IAC_LABELS_SQL_QUERY)."
    )
    labels_sql_query: str | None = Field(
        None,
        description="SELECT returning the id and label columns; re-run each ingestion "
        "(joining is idempotent).",
    )
    labels_id_column: str = Field("prediction_id", min_length=1)
    labels_label_column: str = Field("label", min_length=1)
    labels_settle_seconds: float = Field(
        2.0,
        ge=0,
        description="A label file modified more recently than this is still being written: "
        "it waits for the next ingestion.",
    )
    estimation_warn_drop: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Warn (Discord) when the CBPE-estimated accuracy of the unlabelled "
        "window is this far below the champion's reference accuracy.",
    )
    # batch validation at ingest (ia_continu.data.validation)
    min_batch_rows: int = Field(
        30,
        ge=1,
        description="Fewer labelled rows than this: the batch is quarantined. Unset: "
        "min(30, IAC_BATCH_SIZE).",
    )

    # --- drift detection -------------------------------------------------------------
    drift_alpha: float = Field(0.01, gt=0, lt=1, description="Family-wise level across features.")
    drift_min_wasserstein: float = Field(
        0.05, ge=0, description="Min Wasserstein distance, in reference std units (numeric)."
    )
    drift_min_psi: float = Field(0.1, ge=0, description="Min PSI for a categorical feature.")
    drift_min_features: int = Field(1, ge=1, description="Drifted features for dataset drift.")
    current_window_batches: int = Field(1, ge=1)
    concept_drift_alpha: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="One-sided level of the champion error-rate test (per-cycle false-alarm "
        "bound on a stable stream).",
    )
    concept_drift_min_effect: float = Field(
        0.02, ge=0, lt=1, description="Smallest error-rate increase called concept drift."
    )
    concept_drift_reference_batches: int = Field(
        3,
        ge=0,
        description="First batches in service pooled into the champion's reference error rate.",
    )
    retrain_on_data_drift: bool = False
    challenge_every_cycles: int = Field(
        6,
        ge=0,
        description="Also train a challenger when this many cycles passed since the last "
        "retrain (the gate still decides); 0: only on drift.",
    )

    # --- training and promotion ------------------------------------------------------
    training_window_batches: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16],
        description="Candidate training windows in batches (comma list; one value: a fixed "
        "window). The best on the held-out newest batch is trained on.",
    )
    training_min_change_rows: int = Field(
        0,
        ge=0,
        description="After concept drift, train on the batches since the change point once "
        "they hold this many rows; 0: always choose among the candidate windows.",
    )
    training_window_one_se: float = Field(
        1.0,
        ge=0,
        description="Take the longest candidate window scoring within this many binomial "
        "standard errors of the best (0: the best score, shortest on ties).",
    )
    refit_on_holdout: bool = Field(
        True,
        description="Refit the chosen window shifted to include the held-out batch before "
        "promotion (the gate scores the model trained without it).",
    )
    estimator: EstimatorName = "logistic_regression"
    estimator_params: dict[str, Any] = Field(default_factory=dict)
    promotion_margin: float = Field(
        0.0, ge=0, le=1, description="Challenger must beat champion accuracy by more than this."
    )
    promotion_alpha: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Level of the one-sided McNemar test challenger vs champion (1: no test).",
    )
    promotion_min_lift_over_baseline: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Challenger must beat the held-out majority-class accuracy by more than this.",
    )

    # --- orchestration -----------------------------------------------------------------
    schedule_interval_seconds: int = Field(30, ge=5)
    retrain_concurrency_limit: str = "ia-continu-retrain"
    stale_run_seconds: int | None = Field(
        None,
        ge=10,
        description="A run Running/Pending longer than this is presumed dead and marked"
        " Crashed; unset: 10 schedule intervals.",
    )
    work_pool_concurrency: int = Field(
        2, ge=1, description="Flow runs the work pool starts at once (set by the bootstrap)."
    )

    # --- observability -------------------------------------------------------------------
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool = Field(False, description="JSON lines on stderr instead of the human format.")
    log_dir: Path | None = Field(
        None, description="Also write ia-continu.log here (rotated at 50 MB, kept 14 days)."
    )
    pushgateway_url: str | None = Field(
        None, description="Prometheus Pushgateway (http://host:9091); unset: flows push nothing."
    )
    pushgateway_timeout_seconds: float = Field(3.0, gt=0, le=30)

    # --- notification --------------------------------------------------------------------
    discord_webhook_url: SecretStr | None = None
    discord_secret_block: str = "discord-webhook"
    discord_timeout_seconds: float = Field(
        5.0, gt=0, description="Per socket operation (connect, write, each read)."
    )
    discord_max_retry_after_seconds: float = Field(
        10.0, ge=0, description="A 429 asking to wait longer than this is not waited for."
    )
    discord_deadline_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Wall-clock bound on one round of notifications: every attempt, 429 "
        "wait and read. What is not delivered by then waits in the outbox.",
    )
    discord_outbox_max_messages: int = Field(
        100,
        ge=0,
        description="Undelivered notifications kept in IAC_DATA_DIR/discord-outbox.json for "
        "the next cycle (oldest dropped beyond); 0 keeps none.",
    )

    @field_validator("label_delay", mode="before")
    @classmethod
    def _seconds_are_a_delay(cls, value: object) -> object:
        # Env values are text: "90" means 90 s (pydantic reads only ISO 8601 / hh:mm:ss text).
        if isinstance(value, str):
            try:
                return timedelta(seconds=float(value))
            except ValueError:
                return value
        return value

    @field_validator("label_delay")
    @classmethod
    def _delay_not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must be >= 0 seconds")
        return value

    @field_validator("replay_categorical_columns", "replay_classes", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("training_window_batches", mode="before")
    @classmethod
    def _window_sizes(cls, value: object) -> object:
        if isinstance(value, int):
            return [value]
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("training_window_batches")
    @classmethod
    def _window_sizes_positive(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 1:
            raise ValueError("give one or more window sizes, each at least 1 batch")
        return sorted(set(value))

    @field_validator("replay_time_column", mode="before")
    @classmethod
    def _empty_is_no_time_column(cls, value: object) -> object:
        # IAC_REPLAY_TIME_COLUMN= (empty) reaches here as "": it means no time column.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("discord_webhook_url")
    @classmethod
    def _webhook_is_discord_like(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("IAC_DISCORD_WEBHOOK_URL must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _retention_outlives_the_label_delay(self) -> Settings:
        retention = timedelta(hours=self.served_retention_hours)
        if self.served_retention_hours and retention <= self.label_delay:
            raise ValueError(
                f"IAC_SERVED_RETENTION_HOURS ({self.served_retention_hours}) must exceed "
                f"IAC_LABEL_DELAY ({self.label_delay}): a prediction is kept at least until "
                "its label may arrive"
            )
        return self

    @model_validator(mode="after")
    def _windows_fit(self) -> Settings:
        if self.replay_time_column and self.replay_time_column == self.replay_target:
            raise ValueError("IAC_REPLAY_TIME_COLUMN must differ from IAC_REPLAY_TARGET")
        if "min_batch_rows" not in self.model_fields_set:
            # The default must not turn a small-batch stream into one that quarantines all.
            self.min_batch_rows = min(self.min_batch_rows, self.batch_size)
        if self.min_batch_rows > self.batch_size:
            raise ValueError(
                f"IAC_MIN_BATCH_ROWS ({self.min_batch_rows}) must not exceed IAC_BATCH_SIZE "
                f"({self.batch_size}): every batch would be quarantined"
            )
        return self

    @property
    def resolved_labels_dir(self) -> Path:
        """The label inbox: ``labels_dir`` or ``data_dir/labels``."""
        return self.labels_dir or self.data_dir / "labels"

    @property
    def resolved_serving_window_rows(self) -> int:
        """Rows of the unlabelled serving window: ``serving_window_rows`` or ``batch_size``."""
        return self.serving_window_rows or self.batch_size

    @property
    def resolved_database_url(self) -> str:
        """SQLAlchemy URL: ``database_url`` or a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ia_continu.db').resolve()}"

    @property
    def resolved_prediction_log_database_url(self) -> str:
        """SQLAlchemy URL of the prediction log: its own, or the project database's."""
        return self.prediction_log_database_url or self.resolved_database_url


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()


def setting_problems(error: ValidationError, prefix: str) -> list[str]:
    """One line per bad variable: ``prefix`` + field name (upper case), then why.

    Pydantic's own text is not used: it quotes the input (a secret, for a password hash, a
    token or a URL with a password) and links to its documentation. Shared by the CLI, the
    bootstrap and the console, which print these lines instead of a traceback.
    """
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]).upper() or "SETTINGS"
        reason = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{prefix}{field}: {reason}")
    return problems


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def validated_or_exit(factory: Callable[[], SettingsT], prefix: str) -> SettingsT:
    """Settings from ``factory``, or exit 2 with one line per bad variable (``prefix`` +
    name, see :func:`setting_problems`) on stderr: what an entry point (the CLI, the
    API's ``python -m api``, the bootstrap) does instead of a traceback.

    Raises:
        SystemExit: code 2, when ``factory`` raises :class:`pydantic.ValidationError`.
    """
    try:
        return factory()
    except ValidationError as exc:
        lines = [f"  {line}" for line in setting_problems(exc, prefix)]
        print("invalid configuration:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


def settings_or_exit() -> Settings:
    """:func:`get_settings`, or exit 2 with one line per bad ``IAC_*`` variable."""
    return validated_or_exit(get_settings, "IAC_")
