"""Pure ASGI middleware: request id, latency and status metrics, access log.

Pure ASGI rather than ``BaseHTTPMiddleware``: it adds no task or stream per request,
which matters at thousands of requests per second.
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar

from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-ID`` if the caller sent a sane one), echoes it
    in the response, times the request and counts it by route template and status."""

    def __init__(self, app: ASGIApp, access_log: bool = True):
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        start = time.perf_counter()
        status = 500
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            with logger.contextualize(request_id=request_id):
                try:
                    await self.app(scope, receive, send_with_id)
                except Exception:
                    logger.exception("unhandled error on {} {}", scope["method"], scope["path"])
                    raise
                finally:
                    elapsed = time.perf_counter() - start
                    route = scope.get("route")
                    template = getattr(route, "path", None) or "unmatched"
                    method = scope["method"]
                    metrics.REQUESTS.labels(method, template, str(status)).inc()
                    metrics.LATENCY.labels(method, template).observe(elapsed)
                    if self.access_log:
                        logger.info(
                            "{} {} {} {:.1f} ms", method, scope["path"], status, elapsed * 1000
                        )
        finally:
            REQUEST_ID.reset(token)
