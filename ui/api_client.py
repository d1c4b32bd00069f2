"""The console's calls to the prediction API (httpx, bearer token, bounded timeouts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pandas as pd

from ui.settings import UiSettings


class ApiError(RuntimeError):
    """The prediction API refused or did not answer; the message is fit for the page."""


@contextmanager
def _client(settings: UiSettings, timeout: float) -> Iterator[httpx.Client]:
    """An httpx client with the console's token; transport failures become ApiError."""
    headers = {}
    if settings.api_token is not None:
        headers["Authorization"] = f"Bearer {settings.api_token.get_secret_value()}"
    try:
        with httpx.Client(base_url=settings.api_url, headers=headers, timeout=timeout) as client:
            yield client
    except httpx.HTTPError as exc:
        raise ApiError(
            f"prediction API unreachable at {settings.api_url}: {type(exc).__name__}"
        ) from None


def _json(response: httpx.Response) -> Any:
    if response.status_code == 401:
        raise ApiError(
            "the API refused the token: set IAC_UI_API_TOKEN (`ia-continu token create`)"
        )
    if response.status_code == 422:
        details = response.json().get("detail", [])
        where = "; ".join(
            f"{'.'.join(str(p) for p in d['loc'][1:])}: {d['msg']}" for d in details[:5]
        )
        raise ApiError(f"invalid input: {where}")
    if response.status_code == 503:
        raise ApiError("the API has no model loaded yet")
    if response.is_error:
        raise ApiError(f"the API answered {response.status_code}")
    return response.json()


def model_info(settings: UiSettings) -> dict[str, Any]:
    """``GET /model``: the served model, its input columns and signature.

    Raises:
        ApiError: unreachable, or no model loaded.
    """
    with _client(settings, settings.timeout_seconds) as client:
        return dict(_json(client.get("/model")))


def predict_row(settings: UiSettings, row: dict[str, Any]) -> dict[str, Any]:
    """``POST /predict`` for one row.

    Raises:
        ApiError: refused (message names the field at fault) or unreachable.
    """
    with _client(settings, settings.timeout_seconds * 5) as client:
        return dict(_json(client.post("/predict", json=row)))


def predict_frame(
    settings: UiSettings, frame: pd.DataFrame, chunk_rows: int = 10_000
) -> pd.DataFrame:
    """``frame`` with ``prediction``, ``probability`` and ``model_version`` columns added,
    predicted through ``POST /predict/batch`` in chunks of ``chunk_rows``.

    Raises:
        ApiError: refused (message names the row and column) or unreachable.
    """
    parts = []
    with _client(settings, settings.timeout_seconds * 30) as client:
        for start in range(0, len(frame), chunk_rows):
            chunk = frame.iloc[start : start + chunk_rows]
            rows = chunk.to_dict(orient="records")
            answer = _json(client.post("/predict/batch", json={"rows": rows}))
            predicted = pd.DataFrame(answer["predictions"], index=chunk.index)
            predicted["model_version"] = answer["model_version"]
            parts.append(chunk.join(predicted))
    return (
        pd.concat(parts) if parts else frame.assign(prediction=[], probability=[], model_version=[])
    )
