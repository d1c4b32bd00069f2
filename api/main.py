"""The FastAPI application: ``create_app()`` builds it, its lifespan loads the champion
and runs the reload loop.

Run it with ``python -m api`` (or ``uvicorn --factory api.main:create_app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from loguru import logger

from api import metrics
from api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from api.routes import health, model, predict
from api.routes import metrics as metrics_route
from api.settings import ApiSettings, get_api_settings
from ia_continu.auth.tokens import TokenVerifier
from ia_continu.data.storage.migrate import migrate
from ia_continu.logs import configure_logging
from ia_continu.serving.champion import ChampionWatcher, PollOutcome
from ia_continu.serving.prediction_log import PredictionLog, Retention
from ia_continu.settings import Settings, get_settings
from ia_continu.training import registry

DESCRIPTION = """Predictions from the registered model behind the `champion` alias.

The request body of `/predict` follows the served model's MLflow signature; this
document shows the signature of the version loaded when it was generated."""


def _record(outcome: PollOutcome, watcher: ChampionWatcher) -> None:
    metrics.REGISTRY_UP.set(0 if outcome is PollOutcome.UNREACHABLE else 1)
    metrics.MODEL_FALLBACK.labels(watcher.name).set(1 if watcher.fallback_reason else 0)
    if outcome in (PollOutcome.RELOADED, PollOutcome.FALLBACK) and watcher.current is not None:
        metrics.RELOADS.inc()
        metrics.MODEL_VERSION.labels(watcher.name).set(watcher.current.version)
        metrics.MODEL_LOADED_AT.labels(watcher.name).set(watcher.current.loaded_at.timestamp())
    if outcome in (PollOutcome.UNREACHABLE, PollOutcome.LOAD_FAILED, PollOutcome.FALLBACK):
        # FALLBACK: the alias's version failed to load, the fallback version serves.
        reason = PollOutcome.LOAD_FAILED if outcome is PollOutcome.FALLBACK else outcome
        metrics.RELOAD_FAILURES.labels(reason.value).inc()


def _retention(api_settings: ApiSettings) -> Retention:
    hours, rows = api_settings.prediction_log_max_age_hours, api_settings.prediction_log_max_rows
    return Retention(
        max_age=timedelta(hours=hours) if hours > 0 else None,
        max_rows=rows if rows > 0 else None,
        interval_seconds=api_settings.prediction_log_retention_seconds,
    )


async def _reload_loop(watcher: ChampionWatcher, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        _record(await asyncio.to_thread(watcher.poll_once), watcher)


def create_app(
    api_settings: ApiSettings | None = None, settings: Settings | None = None
) -> FastAPI:
    """Build the app. Nothing is loaded until the lifespan starts (no import-time I/O).

    Raises:
        pydantic.ValidationError: invalid ``IAC_*`` / ``IAC_API_*`` settings.
    """
    api_settings = api_settings or get_api_settings()
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(api_settings.log_level, api_settings.log_json, api_settings.log_dir)
        # The reload loop must notice an outage in seconds, not after MLflow's default
        # 7 retries with exponential backoff.
        registry.bound_mlflow_http(0, api_settings.registry_timeout_seconds)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # The API's start-up is one of the places that upgrade the schema (with the
        # bootstrap and `ia-continu migrate`): it may start before anything else did.
        engine = await asyncio.to_thread(migrate, settings.resolved_database_url)
        watcher = ChampionWatcher(
            settings.mlflow_tracking_uri,
            settings.registered_model_name,
            alias=api_settings.alias,
            max_batch_rows=api_settings.max_batch_rows,
            use_onnx=api_settings.onnx,
        )
        metrics.MODEL_VERSION.labels(watcher.name).set(0)
        metrics.MODEL_FALLBACK.labels(watcher.name).set(0)
        prediction_log = None
        if api_settings.prediction_log:
            log_url = settings.resolved_prediction_log_database_url
            log_engine = (
                engine
                if log_url == settings.resolved_database_url
                else await asyncio.to_thread(migrate, log_url)
            )
            prediction_log = PredictionLog(
                log_engine,
                max_queued=api_settings.prediction_log_queue,
                flush_seconds=api_settings.prediction_log_flush_seconds,
                on_written=metrics.PREDICTION_LOG_WRITTEN.inc,
                on_dropped=metrics.PREDICTION_LOG_DROPPED.inc,
                on_failed=metrics.PREDICTION_LOG_FAILED.inc,
                retention=_retention(api_settings),
                on_pruned=metrics.PREDICTION_LOG_PRUNED.inc,
            )
            prediction_log.start()
        app.state.watcher = watcher
        app.state.token_verifier = TokenVerifier(engine, api_settings.token_cache_seconds)
        app.state.prediction_log = prediction_log
        _record(await asyncio.to_thread(watcher.poll_once), watcher)
        if api_settings.auth == "disabled":
            logger.warning("IAC_API_AUTH=disabled: /predict answers without a token")
        logger.info(
            "API up: model {} alias {} ({}), polling every {} s",
            watcher.name,
            watcher.alias,
            f"version {watcher.current.version}" if watcher.current else "none loaded yet",
            api_settings.reload_interval_seconds,
        )
        # Start-up objects (model, MLflow, SQLAlchemy) never die: keep them out of the
        # collector's sweeps, which otherwise show up as latency spikes.
        gc.freeze()
        task = asyncio.create_task(_reload_loop(watcher, api_settings.reload_interval_seconds))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if prediction_log is not None:
                await asyncio.to_thread(prediction_log.close)

    app = FastAPI(
        title="IA Continu prediction API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.api_settings = api_settings
    # Added last = outermost: the request context also times and counts the 413s.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=api_settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, access_log=api_settings.access_log)
    for router in (predict.router, health.router, model.router, metrics_route.router):
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = document.setdefault("components", {})
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Token from `ia-continu token create NAME`.",
            }
        }
        schemas = components.setdefault("schemas", {})
        watcher: ChampionWatcher | None = getattr(app.state, "watcher", None)
        served = watcher.current if watcher is not None else None
        if served is None:
            schemas["InputRow"] = {"type": "object", "description": "No model loaded yet."}
            schemas["InputBatch"] = {"type": "object", "description": "No model loaded yet."}
            return document
        template = "#/components/schemas/{model}"
        schemas["InputRow"] = served.validator.row_json_schema()
        batch = served.validator.batch_json_schema(ref_template=template)
        schemas.update(batch.pop("$defs", {}))
        schemas["InputBatch"] = batch
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    return app
