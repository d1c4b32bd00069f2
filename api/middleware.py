"""Pure ASGI middleware: request id, latency and status metrics, access log; request
body size limit.

Pure ASGI rather than ``BaseHTTPMiddleware``: it adds no task or stream per request,
which matters at thousands of requests per second.
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar

import orjson
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
        """ASGI entry point: tag, time and count one HTTP request; other scopes pass through."""
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


class _BodyTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes the limit."""


class BodySizeLimitMiddleware:
    """Answers 413 to a request whose body is larger than ``max_bytes``, before reading it.

    A declared ``Content-Length`` over the limit is refused without reading a byte of
    the body; a chunked body is counted as it arrives and refused as soon as it passes
    the limit, so at most ``max_bytes`` (plus one chunk) are ever held in memory.
    The connection stays open: uvicorn discards the rest of the body it receives.

    Args:
        app: the wrapped ASGI app.
        max_bytes: largest accepted body (``IAC_API_MAX_BODY_BYTES``).
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self._answer = orjson.dumps(
            {
                "detail": f"request body larger than {max_bytes} bytes "
                "(IAC_API_MAX_BODY_BYTES); split the batch into smaller requests"
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: pass the request on, answering 413 once its body passes the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    await self._refuse(send)
                    return
                break
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooLarge:
            if started:  # cannot happen with our routes (they read the body first)
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        logger.warning("request body over {} bytes refused (413)", self.max_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._answer})
