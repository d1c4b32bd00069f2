"""``GET /metrics``: Prometheus exposition."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api import metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    """Prometheus metrics in the text exposition format (open, like /health)."""
    payload, content_type = metrics.exposition()
    return Response(payload, media_type=content_type)
