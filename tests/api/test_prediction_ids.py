"""Prediction identity: every served row has an id (the client's ``prediction_id`` or one
derived from the request id), answered, validated, and written to the prediction log."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import PredictionLogRow
from ia_continu.serving.champion import ChampionWatcher, PollOutcome
from ia_continu.serving.prediction_log import (
    PREDICTION_LOG,
    PredictionLog,
    PredictionRecord,
    default_ids,
    load_predictions,
)
from ia_continu.serving.signature import SignatureValidator, UnsupportedSignature
from ia_continu.training import registry
from tests.api.conftest import AppFactory
from tests.utils.models import elec2_rows

ROWS = elec2_rows(10)


def _project_engine(tmp_path: Path) -> Engine:
    return migrate(f"sqlite:///{(tmp_path / 'state' / 'ia_continu.db').resolve()}")


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]  # type: ignore[no-any-return]


def test_default_ids_derive_from_the_request_id(open_client: TestClient) -> None:
    single = open_client.post("/predict", json=ROWS[0], headers={"X-Request-ID": "req-1"})
    assert single.json()["prediction_id"] == "req-1"
    batch = open_client.post("/predict/batch", json={"rows": ROWS[:3]}).json()
    request_id = batch["request_id"]
    assert [p["prediction_id"] for p in batch["predictions"]] == [
        f"{request_id}/{i}" for i in range(3)
    ]
    # A one-row batch is still a batch: its id names the row.
    one = open_client.post("/predict/batch", json={"rows": ROWS[:1]}, headers={"X-Request-ID": "b"})
    assert one.json()["predictions"][0]["prediction_id"] == "b/0"


def test_client_ids_are_kept_and_mixed_with_defaults(open_client: TestClient) -> None:
    single = open_client.post("/predict", json={**ROWS[0], "prediction_id": "order:42/A.b-c_d"})
    assert single.status_code == 200, single.text
    assert single.json()["prediction_id"] == "order:42/A.b-c_d"
    rows = [{**ROWS[0], "prediction_id": "x1"}, ROWS[1], {**ROWS[2], "prediction_id": "x3"}]
    batch = open_client.post("/predict/batch", json={"rows": rows}, headers={"X-Request-ID": "r"})
    assert batch.status_code == 200, batch.text
    assert [p["prediction_id"] for p in batch.json()["predictions"]] == ["x1", "r/1", "x3"]
    # The id is not a model input: same answer with or without it.
    plain = open_client.post("/predict/batch", json={"rows": ROWS[:3]}).json()["predictions"]
    assert [p["probability"] for p in batch.json()["predictions"]] == pytest.approx(
        [p["probability"] for p in plain]
    )


def test_unicode_escaped_key_is_still_the_id(open_client: TestClient) -> None:
    """The fast path looks for the key's bytes; an escaped key name must not slip past."""
    body = orjson.dumps(ROWS[0])[:-1] + b', "prediction\\u005fid": "esc-1"}'
    response = open_client.post("/predict", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["prediction_id"] == "esc-1"


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        ("", "string_too_short"),
        ("has space", "string_pattern_mismatch"),
        ("-starts-with-dash", "string_pattern_mismatch"),
        ("x" * 129, "string_too_long"),
        ("line\n", "string_pattern_mismatch"),
        (42, "string_type"),
        (None, "string_type"),
    ],
)
def test_invalid_ids_are_refused_naming_row_and_field(
    open_client: TestClient, value: object, error_type: str
) -> None:
    errors = _errors(open_client.post("/predict", json={**ROWS[0], "prediction_id": value}))
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", "prediction_id"], error_type)]
    rows = [dict(r) for r in ROWS[:4]]
    rows[2]["prediction_id"] = value
    errors = _errors(open_client.post("/predict/batch", json={"rows": rows}))
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["body", "rows", 2, "prediction_id"], error_type)
    ]


def test_duplicate_ids_in_a_batch_are_refused_naming_the_row(
    make_app: AppFactory, tmp_path: Path
) -> None:
    app = make_app(auth="disabled", prediction_log_flush_seconds=0.05)
    with TestClient(app) as client:
        rows = [{**r, "prediction_id": i} for r, i in zip(ROWS[:5], "abcbb", strict=True)]
        errors = _errors(client.post("/predict/batch", json={"rows": rows}))
        assert [(e["loc"], e["type"]) for e in errors] == [
            (["body", "rows", 3, "prediction_id"], "duplicate_prediction_id"),
            (["body", "rows", 4, "prediction_id"], "duplicate_prediction_id"),
        ]
        assert "row 1" in errors[0]["msg"] and errors[0]["input"] == "b"
        # A client id equal to another row's default id is a duplicate too.
        clash = [{**ROWS[0], "prediction_id": "q/1"}, ROWS[1]]
        errors = _errors(
            client.post("/predict/batch", json={"rows": clash}, headers={"X-Request-ID": "q"})
        )
        assert [e["loc"] for e in errors] == [["body", "rows", 1, "prediction_id"]]
    # Refused requests are not logged.
    assert load_predictions(_project_engine(tmp_path)).empty


def test_ids_are_written_to_the_prediction_log(make_app: AppFactory, tmp_path: Path) -> None:
    app = make_app(auth="disabled", prediction_log_flush_seconds=0.05)
    with TestClient(app) as client:
        single = client.post("/predict", json=ROWS[0], headers={"X-Request-ID": "s1"}).json()
        rows = [{**ROWS[1], "prediction_id": "biz-1"}, ROWS[2], ROWS[3]]
        batch = client.post("/predict/batch", json={"rows": rows}).json()
    engine = _project_engine(tmp_path)
    frame = load_predictions(engine)
    answered = [single["prediction_id"]] + [p["prediction_id"] for p in batch["predictions"]]
    assert list(frame["prediction_id"]) == answered == ["s1", "biz-1", *answered[2:]]
    assert answered[2:] == [f"{batch['request_id']}/1", f"{batch['request_id']}/2"]
    assert list(frame["prediction"]) == [single["prediction"]] + [
        p["prediction"] for p in batch["predictions"]
    ]
    # The stored record has 8 items; its rows hold the model's columns only.
    with engine.connect() as connection:
        records = [
            r for write in connection.scalars(select(PredictionLogRow.records)) for r in write
        ]
    assert [len(r) for r in records] == [8, 8]
    assert all(set(row) == set(ROWS[0]) for r in records for row in r[4])
    assert [r[7] for r in records] == [answered[:1], answered[1:]]


def test_old_seven_item_records_are_still_read(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'log.db'}")
    t0 = time.time() - 10
    old = [
        [t0, "old-1", "m", 1, ROWS[:1], ["UP"], [0.8]],
        [t0 + 1, "old-2", "m", 1, ROWS[1:4], ["UP", "DOWN", "UP"], None],
    ]
    with engine.begin() as connection:
        connection.execute(
            insert(PREDICTION_LOG),
            {
                "first_at": datetime.fromtimestamp(t0, UTC),
                "last_at": datetime.fromtimestamp(t0 + 1, UTC),
                "n_requests": 2,
                "n_rows": 4,
                "records": old,
            },
        )
    log = PredictionLog(engine, flush_seconds=0.01)
    log.start()
    log.offer(PredictionRecord(t0 + 2, "new", "m", 2, ROWS[4:6], ["UP", "UP"], None, ["n1", "n2"]))
    log.close()
    frame = load_predictions(engine)
    assert list(frame["prediction_id"]) == ["old-1", "old-2/0", "old-2/1", "old-2/2", "n1", "n2"]
    assert list(frame["request_id"]) == ["old-1"] + ["old-2"] * 3 + ["new"] * 2


def test_prediction_record_defaults_and_checks_its_ids() -> None:
    assert PredictionRecord(0.0, "r", "m", 1, ROWS[:1], ["UP"], None).ids == ["r"]
    assert PredictionRecord(0.0, "r", "m", 1, ROWS[:2], ["UP"] * 2, None).ids == ["r/0", "r/1"]
    assert default_ids("r", 3) == ["r/0", "r/1", "r/2"]
    with pytest.raises(ValueError, match="2 rows but 1 ids"):
        PredictionRecord(0.0, "r", "m", 1, ROWS[:2], ["UP"] * 2, None, ["only-one"])


def test_openapi_row_schema_documents_the_optional_id(open_client: TestClient) -> None:
    schemas = open_client.get("/openapi.json").json()["components"]["schemas"]
    prop = schemas["InputRow"]["properties"]["prediction_id"]
    assert prop["type"] == "string" and prop["maxLength"] == 128
    assert prop["pattern"].startswith("^[A-Za-z0-9]")
    assert "prediction_id" not in schemas["InputRow"]["required"]
    assert "prediction_id" in schemas["RowPrediction"]["required"]


def test_a_model_with_a_prediction_id_column_is_refused_at_load(tmp_path: Path) -> None:
    """The key is reserved: a model that takes a ``prediction_id`` input is not served
    (the last good version keeps serving), with an error that says why."""
    frame = pd.DataFrame({"prediction_id": [0.0, 1.0, 2.0, 3.0], "x": [1.0, -1.0, 2.0, -2.0]})
    target = [1, 0, 1, 0]
    with pytest.raises(UnsupportedSignature, match="'prediction_id' is reserved"):
        SignatureValidator(infer_signature(frame), max_batch_rows=10)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry.client(uri)
    model = LogisticRegression().fit(frame, target)
    _, model_uri = registry.log_challenger(
        client,
        experiment="reserved-column",
        model=model,
        input_example=frame,
        params={},
        metrics={},
        tags={},
        lineage={},
    )
    version = registry.register(client, name="reserved", model_uri=model_uri, tags={})
    registry.promote(client, "reserved", version)
    watcher = ChampionWatcher(uri, "reserved", fallback_alias=None)
    assert watcher.poll_once() is PollOutcome.LOAD_FAILED and watcher.current is None
    assert "'prediction_id' is reserved" in (watcher.last_error or "")
