"""Dependencies shared by the routes (``Annotated`` aliases)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from api import metrics
from api.settings import ApiSettings
from ia_continu.serving.champion import ChampionWatcher, ServedModel
from ia_continu.serving.prediction_log import PredictionLog
from ia_continu.tokens import TokenInfo, TokenVerifier


async def _watcher(request: Request) -> ChampionWatcher:
    watcher: ChampionWatcher = request.app.state.watcher
    return watcher


async def _settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.api_settings
    return settings


async def _prediction_log(request: Request) -> PredictionLog | None:
    log: PredictionLog | None = request.app.state.prediction_log
    return log


async def _served_model(request: Request) -> ServedModel:
    """The model at the start of the request: it serves the whole request, swap or not."""
    served = request.app.state.watcher.current
    if served is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no champion model loaded yet")
    return served  # type: ignore[no-any-return]


_UNAUTHORIZED = HTTPException(
    status.HTTP_401_UNAUTHORIZED,
    "missing, invalid, expired or revoked API token",
    headers={"WWW-Authenticate": "Bearer"},
)


async def _require_token(request: Request) -> TokenInfo | None:
    settings: ApiSettings = request.app.state.api_settings
    if settings.auth == "disabled":
        return None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        metrics.AUTH_FAILURES.inc()
        raise _UNAUTHORIZED
    verifier: TokenVerifier = request.app.state.token_verifier
    decided, info = verifier.cached(token.strip())
    if not decided:  # cache miss: read the database off the event loop
        info = await asyncio.to_thread(verifier.verify, token.strip())
    if info is None:
        metrics.AUTH_FAILURES.inc()
        raise _UNAUTHORIZED
    return info


WatcherDep = Annotated[ChampionWatcher, Depends(_watcher)]
ApiSettingsDep = Annotated[ApiSettings, Depends(_settings)]
PredictionLogDep = Annotated[PredictionLog | None, Depends(_prediction_log)]
ServedModelDep = Annotated[ServedModel, Depends(_served_model)]
TokenDep = Annotated[TokenInfo | None, Depends(_require_token)]
