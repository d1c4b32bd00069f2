"""A local stand-in for a Discord webhook endpoint: real HTTP on 127.0.0.1, scriptable failures.

``FakeDiscord`` serves ``POST /api/webhooks/<id>/<token>`` from a background thread and
answers the way Discord does (API v10):

* 204 No Content when the message is valid (200 with a message object for ``?wait=true``);
* 400 with Discord's JSON error body when the body is not JSON (code 50109), carries neither
  ``content`` nor ``embeds`` (50006), or breaks a limit (50035 "Invalid Form Body" with the
  nested ``errors`` tree): more than 10 embeds, title 256, description 4096, 25 fields, field
  name 256, field value 1024, footer 2048, author name 256, content 2000, and 6000 characters
  across all embeds of the message;
* 404 "Unknown Webhook" (10015) for another webhook id, 401 "Invalid Webhook Token" (50027)
  for another token, 405 for other methods.

``script(*statuses)`` queues answers for the next requests, before any validation (Discord's
rate limiter runs first too): 429 gives ``{"message": "You are being rate limited.",
"retry_after": ..., "global": false}`` plus ``Retry-After`` and ``X-RateLimit-*`` headers;
5xx and 4xx give Discord's (or, for 502, Cloudflare's HTML) error bodies; 204 or None in the
queue means "handle this one normally". ``script_raw`` queues an arbitrary response.

Slow servers: ``script_hang`` reads the next request and never answers (until ``stop``);
``script_trickle`` sends the next answer one byte at a time (``byte_interval`` seconds
apart), so that every socket read succeeds within a per-read timeout while the whole answer
takes minutes. ``set_fault`` applies one of these (or a status such as 429 / 503) to every
request after the scripted ones, until ``set_fault(None)``: an outage rather than a blip.
A hung or trickling request is recorded at once (``status`` 0 for a hang); its payload
counts as accepted (``received``) only if the last byte of a 2xx answer was written.

Every request is recorded (monotonic time received, method, path, headers, raw body, parsed
JSON, status answered); ``received`` holds the payloads that were accepted.

Assumption: like Discord, a field name or value made only of whitespace counts as missing
("This field is required"); the usual workaround is a zero-width space.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import pytest

WEBHOOK_ID = "123"
WEBHOOK_TOKEN = "fake-token"

MAX_EMBEDS = 10
CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_NAME_MAX = 256
TOTAL_MAX = 6000
COLOR_MAX = 0xFFFFFF

_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/(?P<id>[^/]+)/(?P<token>[^/]+)/?$")


# --------------------------------------------------------------------------------------
# Validation (usable without the server)
# --------------------------------------------------------------------------------------


class _Errors:
    """Discord's nested ``errors`` tree: {"embeds": {"0": {"title": {"_errors": [...]}}}}."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def __bool__(self) -> bool:
        return bool(self.tree)


def _max_length(errors: _Errors, path: tuple[str | int, ...], value: Any, limit: int) -> None:
    if not isinstance(value, str):
        errors.add(path, "STRING_TYPE_CONVERT", f"Could not interpret {value!r} as string.")
    elif len(value) > limit:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _required_text(errors: _Errors, path: tuple[str | int, ...], value: Any, limit: int) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
    else:
        _max_length(errors, path, value, limit)


def _embed_size(embed: dict[str, Any]) -> int:
    def text(value: Any) -> int:
        return len(value) if isinstance(value, str) else 0

    size = text(embed.get("title")) + text(embed.get("description"))
    footer, author = embed.get("footer"), embed.get("author")
    if isinstance(footer, dict):
        size += text(footer.get("text"))
    if isinstance(author, dict):
        size += text(author.get("name"))
    fields = embed.get("fields")
    if isinstance(fields, list):
        for item in fields:
            if isinstance(item, dict):
                size += text(item.get("name")) + text(item.get("value"))
    return size


def _validate_embed(errors: _Errors, index: int, embed: Any) -> None:
    path: tuple[str | int, ...] = ("embeds", index)
    if not isinstance(embed, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    if "title" in embed:
        _max_length(errors, (*path, "title"), embed["title"], TITLE_MAX)
    if "description" in embed:
        _max_length(errors, (*path, "description"), embed["description"], DESCRIPTION_MAX)
    if "color" in embed:
        colour = embed["color"]
        if isinstance(colour, bool) or not isinstance(colour, int):
            errors.add((*path, "color"), "NUMBER_TYPE_COERCE", f"Value {colour!r} is not int.")
        elif not 0 <= colour <= COLOR_MAX:
            errors.add((*path, "color"), "NUMBER_TYPE_MAX", f"int value should be <= {COLOR_MAX}.")
    if "timestamp" in embed:
        stamp = embed["timestamp"]
        try:
            datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            errors.add(
                (*path, "timestamp"),
                "DATE_TIME_TYPE_PARSE",
                f"Could not parse {stamp}. Should be ISO8601.",
            )
    if "footer" in embed:
        footer = embed["footer"]
        if not isinstance(footer, dict):
            errors.add((*path, "footer"), "DICT_TYPE_CONVERT", "Only dictionaries may be used")
        else:
            _required_text(errors, (*path, "footer", "text"), footer.get("text"), FOOTER_MAX)
    if "author" in embed:
        author = embed["author"]
        if not isinstance(author, dict):
            errors.add((*path, "author"), "DICT_TYPE_CONVERT", "Only dictionaries may be used")
        else:
            _required_text(errors, (*path, "author", "name"), author.get("name"), AUTHOR_NAME_MAX)
    if "fields" in embed:
        fields = embed["fields"]
        if not isinstance(fields, list):
            errors.add((*path, "fields"), "LIST_TYPE_CONVERT", "Only iterables may be used")
            return
        if len(fields) > FIELDS_MAX:
            errors.add(
                (*path, "fields"),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {FIELDS_MAX} or fewer in length.",
            )
        for number, item in enumerate(fields):
            where = (*path, "fields", number)
            if not isinstance(item, dict):
                errors.add(where, "DICT_TYPE_CONVERT", "Only dictionaries may be used")
                continue
            _required_text(errors, (*where, "name"), item.get("name"), FIELD_NAME_MAX)
            _required_text(errors, (*where, "value"), item.get("value"), FIELD_VALUE_MAX)
            if "inline" in item and not isinstance(item["inline"], bool):
                errors.add((*where, "inline"), "BOOLEAN_TYPE_COERCE", "Must be a boolean.")


def validate_message(body: Any) -> dict[str, Any] | None:
    """Discord's 400 error body for a parsed webhook message, or None when Discord accepts it."""
    if not isinstance(body, dict):
        return {"message": "Cannot send an empty message", "code": 50006}
    content, embeds = body.get("content"), body.get("embeds")
    has_content = isinstance(content, str) and content.strip() != ""
    if not has_content and not embeds:
        return {"message": "Cannot send an empty message", "code": 50006}
    errors = _Errors()
    if content is not None:
        _max_length(errors, ("content",), content, CONTENT_MAX)
    if embeds is not None:
        if not isinstance(embeds, list):
            errors.add(("embeds",), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        else:
            if len(embeds) > MAX_EMBEDS:
                errors.add(
                    ("embeds",), "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length."
                )
            for index, embed in enumerate(embeds):
                _validate_embed(errors, index, embed)
            size = sum(_embed_size(e) for e in embeds if isinstance(e, dict))
            if size > TOTAL_MAX:
                errors.add(
                    ("embeds",),
                    "MAX_EMBED_SIZE_EXCEEDED",
                    f"Embed size exceeds maximum size of {TOTAL_MAX}",
                )
    if errors:
        return {"message": "Invalid Form Body", "code": 50035, "errors": errors.tree}
    return None


# --------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake server saw it, and what it answered."""

    at: float  # time.monotonic() when the request line was read
    method: str
    path: str  # including any query string
    headers: dict[str, str]
    body: bytes
    json: Any  # parsed body, None when it was not JSON
    status: int


Behaviour = Literal["answer", "hang", "trickle"]
HANG_MAX_SECONDS = 300.0  # a hung handler gives up by itself even if nobody stops the fake


@dataclass(frozen=True)
class _Scripted:
    status: int | None  # None: handle normally
    retry_after: float = 0.3
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    behaviour: Behaviour = "answer"
    byte_interval: float = 0.5  # trickle: seconds between two bytes


@dataclass(frozen=True)
class _Answer:
    status: int  # 0: no answer (hang)
    body: bytes
    headers: dict[str, str]
    behaviour: Behaviour = "answer"
    byte_interval: float = 0.5


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data).encode()


def _error_response(status: int, retry_after: float) -> tuple[bytes, dict[str, str]]:
    json_type = {"Content-Type": "application/json"}
    if status == 429:
        headers = {
            **json_type,
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Scope": "user",
        }
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": False,
        }
        return _json_bytes(body), headers
    if status == 404:
        return _json_bytes({"message": "Unknown Webhook", "code": 10015}), json_type
    if status == 401:
        return _json_bytes({"message": "Invalid Webhook Token", "code": 50027}), json_type
    if status == 502:  # Discord's 502s come from Cloudflare, as HTML
        html = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
        return html, {"Content-Type": "text/html"}
    phrase = HTTPStatus(status).phrase
    return _json_bytes({"message": f"{status}: {phrase}", "code": 0}), json_type


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like httpx expects
    timeout = 10  # an idle keep-alive connection does not hold a thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        return

    def _answer(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != 204:
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        at = time.monotonic()
        body = self._read_body()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        fake = self.server.fake
        release = fake._released  # this request's: set by stop() or the end of a fault
        answer = fake._decide(self.path, self.headers, body, parsed)
        ok = 200 <= answer.status < 300
        fake._record(
            RecordedRequest(
                at=at,
                method="POST",
                path=self.path,
                headers=dict(self.headers.items()),
                body=body,
                json=parsed,
                status=answer.status,
            ),
            accepted=parsed if ok and answer.behaviour == "answer" else None,
        )
        if answer.behaviour == "hang":
            release.wait(HANG_MAX_SECONDS)
            self.close_connection = True
        elif answer.behaviour == "trickle":
            if self._trickle(answer, release) and ok:
                fake._accept(parsed)
        else:
            self._answer(answer.status, answer.body, answer.headers)

    def _trickle(self, answer: _Answer, release: threading.Event) -> bool:
        """Write the whole answer one byte at a time; False if cut short."""
        head = [f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}"]
        head += [f"{name}: {value}" for name, value in answer.headers.items()]
        head.append(f"Date: {self.date_time_string()}")
        if answer.status != 204:
            head.append(f"Content-Length: {len(answer.body)}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode()
        raw += answer.body if answer.status != 204 else b""
        self.close_connection = True
        try:
            for index in range(len(raw)):
                if release.wait(answer.byte_interval):
                    return False
                self.wfile.write(raw[index : index + 1])
        except OSError:  # the client gave up and closed the connection
            return False
        return True

    def _not_allowed(self) -> None:
        at = time.monotonic()
        body = self._read_body()
        self.server.fake._record(
            RecordedRequest(
                at, self.command, self.path, dict(self.headers.items()), body, None, 405
            ),
            accepted=None,
        )
        payload = _json_bytes({"message": "405: Method Not Allowed", "code": 0})
        self._answer(405, payload, {"Content-Type": "application/json"})

    do_GET = do_PUT = do_PATCH = do_DELETE = _not_allowed


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeDiscord

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client hanging up mid-request is not the test's business


class FakeDiscord:
    """Fake Discord webhook on ``127.0.0.1:<ephemeral port>``; see the module docstring."""

    def __init__(self, webhook_id: str = WEBHOOK_ID, token: str = WEBHOOK_TOKEN) -> None:
        self.webhook_id = webhook_id
        self.token = token
        self._lock = threading.Lock()
        self._queue: deque[_Scripted] = deque()
        self._requests: list[RecordedRequest] = []
        self._received: list[Any] = []
        self._fault: _Scripted | None = None
        self._released = threading.Event()  # set by stop(): hung/trickling handlers end
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-discord",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    # -- public API ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Full webhook URL, e.g. ``http://127.0.0.1:PORT/api/webhooks/123/fake-token``."""
        return f"{self.base_url}/api/webhooks/{self.webhook_id}/{self.token}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def received(self) -> list[Any]:
        """Parsed payloads of the requests that were accepted (2xx), in order (a copy)."""
        with self._lock:
            return list(self._received)

    def script(self, *statuses: int | None, retry_after: float = 0.3) -> None:
        """Answer the next requests with ``statuses`` in order (204/None: handle normally)."""
        with self._lock:
            for status in statuses:
                normal = status is None or status == 204
                self._queue.append(_Scripted(None if normal else status, retry_after))

    def script_raw(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next request with exactly ``status``, ``body`` and ``headers``."""
        with self._lock:
            self._queue.append(_Scripted(status, body=body, headers=dict(headers or {})))

    def script_hang(self, count: int = 1) -> None:
        """Read the next ``count`` requests and never answer them (until ``stop``)."""
        with self._lock:
            for _ in range(count):
                self._queue.append(_Scripted(None, behaviour="hang"))

    def script_trickle(
        self, count: int = 1, *, status: int | None = None, byte_interval: float = 0.5
    ) -> None:
        """Send the next ``count`` answers one byte every ``byte_interval`` seconds.

        ``status`` None: the answer normal handling gives (204 for a valid message).
        """
        with self._lock:
            for _ in range(count):
                self._queue.append(
                    _Scripted(status, behaviour="trickle", byte_interval=byte_interval)
                )

    def set_fault(
        self,
        kind: Literal["hang", "trickle", "status"] | None,
        *,
        status: int | None = None,
        retry_after: float = 0.3,
        byte_interval: float = 0.5,
    ) -> None:
        """Apply a fault to every request (after any scripted answers) until
        ``set_fault(None)``: ``hang``, ``trickle`` (of ``status`` or the normal answer), or
        ``status`` (answer ``status`` at once, e.g. 429 with ``retry_after`` or 503).
        ``set_fault(None)`` also ends the requests still hanging or trickling."""
        if kind == "status" and status is None:
            raise ValueError("set_fault('status') needs a status")
        with self._lock:
            if kind is None:
                self._fault = None
                # End the requests still hanging or trickling: the outage is over.
                self._released.set()
                self._released = threading.Event()
            else:
                behaviour: Behaviour = "answer" if kind == "status" else kind
                self._fault = _Scripted(
                    status,
                    retry_after=retry_after,
                    behaviour=behaviour,
                    byte_interval=byte_interval,
                )

    def pending(self) -> int:
        """Scripted answers not used yet."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget recorded requests, scripted answers and any fault set by ``set_fault``."""
        with self._lock:
            self._fault = None
            self._queue.clear()
            self._requests.clear()
            self._received.clear()

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeDiscord:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the handler -------------------------------------------------------------

    def _record(self, request: RecordedRequest, accepted: Any) -> None:
        with self._lock:
            self._requests.append(request)
            if accepted is not None:
                self._received.append(accepted)

    def _accept(self, parsed: Any) -> None:
        with self._lock:
            self._received.append(parsed)

    def _decide(self, raw_path: str, headers: Any, body: bytes, parsed: Any) -> _Answer:
        if _PATH.match(urlsplit(raw_path).path) is None:  # before any script, like Discord
            return _Answer(*self._respond(raw_path, headers, parsed, None))
        with self._lock:
            scripted = self._queue.popleft() if self._queue else self._fault
        if scripted is not None and scripted.behaviour == "hang":
            return _Answer(0, b"", {}, "hang")
        status, payload, extra = self._respond(raw_path, headers, parsed, scripted)
        if scripted is not None and scripted.behaviour == "trickle":
            return _Answer(status, payload, extra, "trickle", scripted.byte_interval)
        return _Answer(status, payload, extra)

    def _respond(
        self, raw_path: str, headers: Any, parsed: Any, scripted: _Scripted | None
    ) -> tuple[int, bytes, dict[str, str]]:
        json_type = {"Content-Type": "application/json"}
        parts = urlsplit(raw_path)
        match = _PATH.match(parts.path)
        if match is None:
            return 404, _json_bytes({"message": "404: Not Found", "code": 0}), json_type
        if scripted is not None and scripted.status is not None:
            if scripted.body is not None:
                return scripted.status, scripted.body, scripted.headers
            payload, extra = _error_response(scripted.status, scripted.retry_after)
            return scripted.status, payload, extra
        if match["id"] != self.webhook_id:
            return 404, *_error_response(404, 0)
        if match["token"] != self.token:
            return 401, *_error_response(401, 0)
        content_type = str(headers.get("Content-Type", ""))
        if not content_type.startswith("application/json"):
            return (
                400,
                _json_bytes({"message": "Cannot send an empty message", "code": 50006}),
                json_type,
            )
        if parsed is None:
            error = {"message": "The request body contains invalid JSON.", "code": 50109}
            return 400, _json_bytes(error), json_type
        error_body = validate_message(parsed)
        if error_body is not None:
            return 400, _json_bytes(error_body), json_type
        if parse_qs(parts.query).get("wait", ["false"])[0].lower() == "true":
            message = {
                "id": "1",
                "type": 0,
                "channel_id": "1",
                "webhook_id": self.webhook_id,
                "content": parsed.get("content", ""),
                "embeds": parsed.get("embeds", []),
            }
            return 200, _json_bytes(message), json_type
        return 204, b"", {}


def closed_port_url() -> str:
    """A webhook URL on a 127.0.0.1 port nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"


@pytest.fixture
def fake_discord() -> Iterator[FakeDiscord]:
    """A running ``FakeDiscord``, stopped after the test."""
    with FakeDiscord() as server:
        yield server
