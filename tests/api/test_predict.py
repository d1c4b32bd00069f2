"""POST /predict and /predict/batch: answers from the champion, 422 naming the field at fault."""

from __future__ import annotations

from json import dumps as json_dumps

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AppFactory, Registry
from tests.utils.models import elec2_rows

ROWS = elec2_rows(50)


def test_single_row_prediction(open_client: TestClient, registry_with_champion: Registry) -> None:
    response = open_client.post("/predict", json=ROWS[0])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prediction"] in ("UP", "DOWN")
    assert 0.5 <= body["probability"] <= 1.0
    assert body["model_name"] == registry_with_champion.name
    assert body["model_version"] == registry_with_champion.champion
    assert body["request_id"] == response.headers["x-request-id"]


def test_batch_prediction_keeps_row_order(open_client: TestClient) -> None:
    singles = [open_client.post("/predict", json=row).json() for row in ROWS[:10]]
    response = open_client.post("/predict/batch", json={"rows": ROWS[:10]})
    assert response.status_code == 200, response.text
    batch = response.json()["predictions"]
    assert [p["prediction"] for p in batch] == [s["prediction"] for s in singles]
    assert [p["probability"] for p in batch] == pytest.approx([s["probability"] for s in singles])


def test_caller_request_id_is_echoed(open_client: TestClient) -> None:
    response = open_client.post("/predict", json=ROWS[0], headers={"X-Request-ID": "abc-123"})
    assert response.json()["request_id"] == "abc-123" == response.headers["x-request-id"]
    # Not a sane id (spaces, too long): replaced by a fresh one.
    response = open_client.post("/predict", json=ROWS[0], headers={"X-Request-ID": "a b" * 40})
    assert response.json()["request_id"] != "a b" * 40


def _errors(response) -> list[dict]:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    return response.json()["detail"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "loc", "error_type"),
    [
        ({"nswprice": "cheap"}, ["body", "nswprice"], "float_type"),
        ({"nswprice": True}, ["body", "nswprice"], "float_type"),
        ({"day": 3}, ["body", "day"], "string_type"),
        ({"surprise": 1.0}, ["body", "surprise"], "extra_forbidden"),
    ],
)
def test_single_row_type_and_extra_column_errors(
    open_client: TestClient, change: dict, loc: list, error_type: str
) -> None:
    errors = _errors(open_client.post("/predict", json={**ROWS[0], **change}))
    assert [(e["loc"], e["type"]) for e in errors] == [(loc, error_type)]


def test_missing_column_is_named(open_client: TestClient) -> None:
    row = {k: v for k, v in ROWS[0].items() if k != "vicdemand"}
    errors = _errors(open_client.post("/predict", json=row))
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", "vicdemand"], "missing")]


def test_batch_error_names_row_and_column(open_client: TestClient) -> None:
    rows = [dict(r) for r in ROWS[:5]]
    rows[3]["transfer"] = "n/a"
    errors = _errors(open_client.post("/predict/batch", json={"rows": rows}))
    assert [e["loc"] for e in errors] == [["body", "rows", 3, "transfer"]]


@pytest.mark.parametrize(
    ("content", "error_type"),
    [
        (b"not json", "json_invalid"),
        (b"[1, 2]", "dict_type"),
        (b"", "json_invalid"),
    ],
)
def test_unparseable_bodies(open_client: TestClient, content: bytes, error_type: str) -> None:
    errors = _errors(open_client.post("/predict", content=content))
    assert errors[0]["type"] == error_type and errors[0]["loc"][0] == "body"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(open_client: TestClient, literal: str) -> None:
    body = {**ROWS[0], "nswprice": 0.0}
    content = json_dumps(body).replace('"nswprice": 0.0', f'"nswprice": {literal}')
    errors = _errors(open_client.post("/predict", content=content))
    assert [(e["loc"], e["type"], e["input"]) for e in errors] == [
        (["body", "nswprice"], "finite_number", literal.replace("Infinity", "inf").lower())
    ]


def test_empty_and_oversize_batches(make_app: AppFactory) -> None:
    with TestClient(make_app(auth="disabled", max_batch_rows=5)) as client:
        assert _errors(client.post("/predict/batch", json={"rows": []}))[0]["type"] == "too_short"
        too_long = _errors(client.post("/predict/batch", json={"rows": ROWS[:6]}))
        assert too_long[0]["type"] == "too_long" and too_long[0]["loc"] == ["body", "rows"]
        assert client.post("/predict/batch", json={"rows": ROWS[:5]}).status_code == 200
        assert _errors(client.post("/predict/batch", json=ROWS[:2]))[0]["loc"] == ["body"]


def test_errors_are_capped_for_huge_bad_batches(open_client: TestClient) -> None:
    rows = [{**r, "day": 1} for r in elec2_rows(500)]
    assert len(_errors(open_client.post("/predict/batch", json={"rows": rows}))) == 50


def test_openapi_request_body_follows_the_signature(open_client: TestClient) -> None:
    schemas = open_client.get("/openapi.json").json()["components"]["schemas"]
    row = schemas["InputRow"]
    assert set(row["required"]) == set(ROWS[0]) and row["additionalProperties"] is False
    assert row["properties"]["day"]["type"] == "string"
    assert row["properties"]["nswprice"]["type"] == "number"
    assert schemas["InputBatch"]["properties"]["rows"]["maxItems"] == 10_000
