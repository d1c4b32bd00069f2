"""``POST /predict`` and ``POST /predict/batch``: predictions from the served champion."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api import metrics
from api.deps import Scoring, ScoringDep
from api.middleware import REQUEST_ID
from api.schemas import BatchPredictionResponse, ErrorMessage, PredictionResponse
from ia_continu.serving.champion import NonFiniteOutput
from ia_continu.serving.prediction_log import PredictionRecord
from ia_continu.serving.signature import Parsed

router = APIRouter(prefix="/predict", tags=["predict"])
T = TypeVar("T")

MAX_ERRORS = 50  # a 10,000-row batch with one bad column must not answer 10,000 errors
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorMessage, "description": "Missing, invalid, expired or revoked token."},
    413: {"model": ErrorMessage, "description": "Body larger than IAC_API_MAX_BODY_BYTES."},
    503: {"model": ErrorMessage, "description": "No model loaded yet."},
}


def _parse_now(validate: Callable[[bytes], T], body: bytes) -> T:
    """``validate(body)``, its pydantic errors turned into a 422 naming the field at fault."""
    try:
        return validate(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [_public(e) for e in exc.errors(include_url=False)[:MAX_ERRORS]]
        ) from None


async def _parse(scoring: Scoring, validate: Callable[[bytes], T], request: Request) -> T:
    """Read the body and validate it; big bodies in a worker thread.

    Parsing a 10,000-row batch takes tens of milliseconds of CPU: on the event loop it
    would stall every other request meanwhile. The body size is capped before it is
    read (:class:`api.middleware.BodySizeLimitMiddleware`).
    """
    body = await request.body()
    if len(body) >= scoring.settings.offload_bytes:
        return await asyncio.to_thread(_parse_now, validate, body)
    return _parse_now(validate, body)


def _public(error: Any) -> dict[str, Any]:
    """A pydantic error made safe to answer: JSON-encodable, no echo of a whole batch."""
    value = error.get("input")
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    elif isinstance(value, (list, dict)):
        value = None  # e.g. an over-size batch: do not send 10,000 rows back
    public = {"type": error["type"], "loc": ("body", *error["loc"]), "msg": error["msg"]}
    public["input"] = value
    if "ctx" in error:
        public["ctx"] = {
            k: v if isinstance(v, (str, int, bool)) else str(v) for k, v in error["ctx"].items()
        }
    return public


async def _predict(
    scoring: Scoring, parsed: Parsed, row_loc: tuple[str, ...]
) -> tuple[list[Any], list[float] | None]:
    served = scoring.served
    rows, arrays, ids = parsed
    try:
        if len(rows) >= scoring.settings.offload_rows:
            labels, probabilities = await asyncio.to_thread(served.predict, arrays)
        else:
            labels, probabilities = served.predict(arrays)
    except NonFiniteOutput as exc:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", *row_loc, *([i] if row_loc else [])),
                    "msg": "the model gives no finite probability for this row: "
                    "values far outside the training range",
                    "input": None,
                }
                for i in exc.rows[:MAX_ERRORS]
            ]
        ) from None
    for label, count in Counter(labels).items():
        metrics.PREDICTIONS.labels(str(label), str(served.version)).inc(count)
    if scoring.log is not None:
        scoring.log.offer(
            PredictionRecord(
                created_at=time.time(),
                request_id=REQUEST_ID.get(),
                model_name=served.name,
                model_version=served.version,
                rows=rows,
                labels=labels,
                probabilities=probabilities,
                ids=ids,
            )
        )
    return labels, probabilities


def _openapi(schema: str) -> dict[str, Any]:
    """Body schema (filled from the served signature by ``api.main``) and bearer auth."""
    body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"requestBody": {"required": True, "content": body}, "security": [{"bearer": []}]}


@router.post(
    "",
    response_model=PredictionResponse,
    responses=_ERRORS,
    openapi_extra=_openapi("InputRow"),
)
async def predict_one(request: Request, scoring: ScoringDep) -> Response:
    """Predict the class of one row: the model's input columns, optional `prediction_id`."""
    served = scoring.served
    request_id = REQUEST_ID.get()
    parsed = await _parse(
        scoring, functools.partial(served.validator.parse_one, request_id=request_id), request
    )
    labels, probabilities = await _predict(scoring, parsed, ())
    body = {
        "prediction_id": parsed.ids[0],
        "prediction": labels[0],
        "probability": probabilities[0] if probabilities is not None else None,
        "model_name": served.name,
        "model_version": served.version,
        "request_id": request_id,
    }
    return Response(orjson.dumps(body), media_type="application/json")


@router.post(
    "/batch",
    response_model=BatchPredictionResponse,
    responses=_ERRORS,
    openapi_extra=_openapi("InputBatch"),
)
async def predict_batch(request: Request, scoring: ScoringDep) -> Response:
    """Predict a batch ``{"rows": [row, ...]}`` (1 to IAC_API_MAX_BATCH_ROWS rows), in order."""
    served = scoring.served
    request_id = REQUEST_ID.get()
    parsed = await _parse(
        scoring, functools.partial(served.validator.parse_many, request_id=request_id), request
    )
    labels, probabilities = await _predict(scoring, parsed, ("rows",))
    probs = probabilities if probabilities is not None else [None] * len(labels)
    body = {
        "predictions": [
            {"prediction_id": i, "prediction": label, "probability": p}
            for i, label, p in zip(parsed.ids, labels, probs, strict=True)
        ],
        "model_name": served.name,
        "model_version": served.version,
        "request_id": request_id,
    }
    return Response(orjson.dumps(body), media_type="application/json")
