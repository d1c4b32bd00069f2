"""Response models of the API. Request bodies follow the served model's signature
(see :mod:`ia_continu.serving.signature`); their OpenAPI schema is built from it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

Label = str | int | float | bool


class RowPrediction(BaseModel):
    """The prediction for one row."""

    prediction_id: str = Field(
        description="The row's prediction_id, or the default: the request id (POST /predict), "
        "<request id>/<row index> (POST /predict/batch). Ground truth is joined on it."
    )
    prediction: Label = Field(description="Predicted class.")
    probability: float | None = Field(
        description="Probability of the predicted class (null if the model has none)."
    )


class PredictionResponse(RowPrediction):
    """Answer to ``POST /predict``."""

    model_name: str
    model_version: int
    request_id: str


class BatchPredictionResponse(BaseModel):
    """Answer to ``POST /predict/batch``: one prediction per row, in order."""

    predictions: list[RowPrediction]
    model_name: str
    model_version: int
    request_id: str


class Health(BaseModel):
    """Liveness: the process answers."""

    status: str = "ok"


class Readiness(BaseModel):
    """Readiness: a model is loaded; plus what the reload loop last saw."""

    ready: bool
    model_name: str
    model_version: int | None
    alias: str | None = Field(
        description="Alias the served version was loaded as: 'champion', or 'previous' when "
        "the champion cannot be loaded at start-up."
    )
    alias_version: int | None = Field(
        description="Version behind the followed alias (champion) at the last poll."
    )
    fallback_reason: str | None = Field(
        description="Why the served version is not the champion's (that version cannot be "
        "loaded); null when the champion serves."
    )
    registry_reachable: bool | None
    last_poll_at: datetime | None
    last_error: str | None


class ModelInfo(BaseModel):
    """The model being served."""

    name: str
    version: int
    alias: str
    run_id: str | None
    trained_at: datetime | None
    loaded_at: datetime
    runtime: str = Field(description="onnxruntime (converted, checked equal) or scikit-learn.")
    metrics: dict[str, float]
    input_columns: list[dict[str, Any]]
    signature: dict[str, Any]
    registry_reachable: bool | None
    fallback_reason: str | None = Field(
        description="Why this is not the champion's version (it cannot be loaded); null when "
        "the champion serves."
    )


class ErrorMessage(BaseModel):
    """Error body of 401 / 413 / 503 answers."""

    detail: str
