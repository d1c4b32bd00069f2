"""``GET /health`` (liveness) and ``GET /ready`` (a model is loaded)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import WatcherDep
from api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: 200 while the process serves HTTP, model or not."""
    return Health()


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "No model loaded yet."}},
)
async def ready(watcher: WatcherDep) -> JSONResponse:
    """Readiness: 200 once a model is loaded (even if the registry is down since), else 503.

    ``alias`` and ``fallback_reason`` say when ``previous`` (or the last good version)
    serves because the champion's version cannot be loaded.
    """
    served = watcher.current
    body = Readiness(
        ready=served is not None,
        model_name=watcher.name,
        model_version=served.version if served is not None else None,
        alias=served.alias if served is not None else None,
        alias_version=watcher.alias_version,
        fallback_reason=watcher.fallback_reason,
        registry_reachable=watcher.registry_reachable,
        last_poll_at=watcher.last_poll_at,
        last_error=watcher.last_error,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if served else 503)
