"""``GET /model``: what is being served."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServedModelDep, WatcherDep
from api.schemas import ErrorMessage, ModelInfo

router = APIRouter(prefix="/model", tags=["model"])


@router.get(
    "",
    response_model=ModelInfo,
    responses={503: {"model": ErrorMessage, "description": "No model loaded yet."}},
)
async def model_info(served: ServedModelDep, watcher: WatcherDep) -> ModelInfo:
    """Name, version, alias, training time, metrics and signature of the served model.

    ``alias`` is ``previous`` when the champion could not be loaded at start-up;
    ``fallback_reason`` then says why.
    """
    return ModelInfo(
        name=served.name,
        version=served.version,
        alias=served.alias,
        run_id=served.run_id,
        trained_at=served.trained_at,
        loaded_at=served.loaded_at,
        runtime=served.runtime,
        metrics=served.metrics,
        input_columns=served.validator.as_dict(),
        signature=served.signature,
        registry_reachable=watcher.registry_reachable,
        fallback_reason=watcher.fallback_reason,
    )
