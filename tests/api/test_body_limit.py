"""Request bodies over IAC_API_MAX_BODY_BYTES get 413 before they are read whole; big
valid batches are parsed off the event loop."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory
from tests.utils.live_api import serve_in_thread
from tests.utils.models import elec2_rows

ROWS = elec2_rows(2_000)
LIMIT = 64 * 1024


def test_declared_length_over_the_limit_is_refused_with_413(make_app: AppFactory) -> None:
    with TestClient(make_app(auth="disabled", max_body_bytes=LIMIT)) as client:
        big = orjson.dumps({"rows": ROWS})
        assert len(big) > LIMIT
        response = client.post(
            "/predict/batch", content=big, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/json"
        assert "IAC_API_MAX_BODY_BYTES" in response.json()["detail"]
        assert response.headers["x-request-id"]  # the request context saw it too
        # Unauthenticated callers get the same 413: nothing about tokens is revealed.
        fits = orjson.dumps({"rows": ROWS[:100]})
        assert len(fits) < LIMIT
        assert client.post("/predict/batch", content=fits).status_code == 200
        metrics = client.get("/metrics").text
        assert 'route="unmatched",status="413"' in metrics


def test_chunked_body_is_counted_and_refused_as_it_arrives(make_app: AppFactory) -> None:
    sent: list[int] = []

    def chunks(total: int) -> Iterator[bytes]:
        piece = b" " * 16_384  # JSON whitespace: a body that would parse, if read whole
        yield b'{"rows": ['
        while sum(sent) < total:
            sent.append(len(piece))
            yield piece
        yield b"]}"

    app = make_app(auth="disabled", max_body_bytes=LIMIT)
    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as client:
        response = client.post("/predict/batch", content=chunks(2 * 1024 * 1024))
        assert response.status_code == 413, response.text
        assert "IAC_API_MAX_BODY_BYTES" in response.json()["detail"]
        # The connection is still usable (uvicorn discarded the rest of the body).
        ok = client.post("/predict/batch", json={"rows": ROWS[:3]})
        assert ok.status_code == 200
        small = iter([orjson.dumps({"rows": ROWS[:5]})])
        assert client.post("/predict/batch", content=small).status_code == 200


def test_big_valid_batches_are_parsed_in_a_thread_with_the_same_answers(
    make_app: AppFactory,
) -> None:
    with (
        TestClient(make_app(auth="disabled", offload_bytes=1)) as threaded,
        TestClient(make_app(auth="disabled", offload_bytes=10**9)) as inline,
    ):
        body = {"rows": ROWS}
        same_id = {"X-Request-ID": "same"}  # the default prediction ids derive from it
        assert (
            threaded.post("/predict/batch", json=body, headers=same_id).json()["predictions"]
            == (inline.post("/predict/batch", json=body, headers=same_id).json()["predictions"])
        )
        bad = [dict(r) for r in ROWS]
        bad[1_500]["transfer"] = "n/a"
        errors = threaded.post("/predict/batch", json={"rows": bad}).json()["detail"]
        assert [e["loc"] for e in errors] == [["body", "rows", 1_500, "transfer"]]
        one, other = (c.post("/predict", json=ROWS[0]).json() for c in (threaded, inline))
        assert (one["prediction"], one["probability"]) == (
            other["prediction"],
            other["probability"],
        )
