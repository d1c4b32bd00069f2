"""GET /metrics parses as Prometheus exposition; the prediction log lands in the database
off the request path, counting drops and failures instead of blocking."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from ia_continu.data.storage.migrate import migrate
from ia_continu.serving.prediction_log import (
    PredictionLog,
    PredictionRecord,
    PruneResult,
    Retention,
    load_predictions,
    prune_predictions,
)
from tests.api.conftest import AppFactory, Registry
from tests.utils.models import elec2_rows

ROWS = elec2_rows(20)


def _samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_exposition(open_client: TestClient, registry_with_champion: Registry) -> None:
    before = _samples(open_client)
    key = (
        "iac_api_requests_total",
        frozenset({"method": "POST", "route": "/predict", "status": "200"}.items()),
    )
    for row in ROWS[:3]:
        assert open_client.post("/predict", json=row).status_code == 200
    open_client.post("/predict", json={"bad": 1})
    after = _samples(open_client)
    assert after[key] - before.get(key, 0) == 3
    bad = (
        "iac_api_requests_total",
        frozenset({"method": "POST", "route": "/predict", "status": "422"}.items()),
    )
    assert after[bad] - before.get(bad, 0) == 1
    latency = (
        "iac_api_request_duration_seconds_count",
        frozenset({"method": "POST", "route": "/predict"}.items()),
    )
    assert after[latency] - before.get(latency, 0) == 4
    version = str(registry_with_champion.champion)
    predicted = sum(
        v
        for (name, labels), v in after.items()
        if name == "iac_api_predictions_total" and dict(labels)["model_version"] == version
    )
    assert predicted >= 3
    model_gauge = (
        "iac_api_model_version",
        frozenset({"model_name": registry_with_champion.name}.items()),
    )
    assert after[model_gauge] == registry_with_champion.champion
    assert after[("iac_api_registry_up", frozenset())] == 1
    assert ("iac_api_model_reloads_total", frozenset()) in after
    # An unknown path is counted under one label, not one per path (bounded cardinality).
    open_client.get("/no/such/path/123")
    unmatched = (
        "iac_api_requests_total",
        frozenset({"method": "GET", "route": "unmatched", "status": "404"}.items()),
    )
    assert _samples(open_client)[unmatched] >= 1


def test_predictions_are_logged_with_inputs_output_and_version(
    make_app: AppFactory, tmp_path: Path, registry_with_champion: Registry
) -> None:
    with TestClient(make_app(auth="disabled", prediction_log_flush_seconds=0.05)) as client:
        single = client.post("/predict", json=ROWS[0]).json()
        batch = client.post("/predict/batch", json={"rows": ROWS[1:6]}).json()
    # Leaving the client ran the lifespan's shutdown, which flushes the queue.
    engine = migrate(f"sqlite:///{(tmp_path / 'state' / 'ia_continu.db').resolve()}")
    frame = load_predictions(engine)
    assert len(frame) == 6
    assert frame["model_version"].eq(registry_with_champion.champion).all()
    assert frame.loc[0, "nswprice"] == ROWS[0]["nswprice"]
    assert frame.loc[0, "prediction"] == single["prediction"]
    assert list(frame["prediction"][1:]) == [p["prediction"] for p in batch["predictions"]]
    assert set(ROWS[0]) <= set(frame.columns)


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'log.db'}")
    dropped: list[int] = []
    log = PredictionLog(engine, max_queued=1, on_dropped=dropped.append)  # writer not started
    record = PredictionRecord(time.time(), "r1", "m", 1, ROWS[:2], ["UP", "DOWN"], [0.7, 0.6])
    assert log.offer(record) is True
    start = time.perf_counter()
    assert log.offer(record) is False
    assert time.perf_counter() - start < 0.01
    assert dropped == [2]


def test_database_failure_is_counted_and_the_writer_survives(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'log.db'}")
    written: list[int] = []
    failed: list[int] = []
    log = PredictionLog(
        engine, flush_seconds=0.05, on_written=written.append, on_failed=failed.append
    )
    log.start()
    record = PredictionRecord(time.time(), "r1", "m", 1, ROWS[:3], ["UP"] * 3, None)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE prediction_log RENAME TO prediction_log_away"))
    log.offer(record)
    deadline = time.monotonic() + 5
    while not failed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert failed == [3]
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE prediction_log_away RENAME TO prediction_log"))
    log.offer(record)
    log.close()
    assert written == [3]
    assert len(load_predictions(engine)) == 3


def test_load_predictions_since_and_limit(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'log.db'}")
    log = PredictionLog(engine, flush_seconds=0.01)
    log.start()
    t0 = time.time()
    for i in range(5):  # 5 requests of 2 rows, one second apart
        log.offer(
            PredictionRecord(
                t0 + i,
                f"r{i}",
                "m",
                1 + i // 3,
                ROWS[2 * i : 2 * i + 2],
                ["UP", "DOWN"],
                [0.9, 0.8],
            )
        )
    log.close()
    frame = load_predictions(engine)
    assert len(frame) == 10 and list(frame["request_id"][::2]) == ["r0", "r1", "r2", "r3", "r4"]
    assert list(frame["model_version"].unique()) == [1, 2]
    newest = load_predictions(engine, limit=3)
    assert list(newest["request_id"]) == ["r3", "r4", "r4"]
    since = load_predictions(engine, since=datetime.fromtimestamp(t0 + 2.5, UTC))
    assert list(since["request_id"].unique()) == ["r3", "r4"]
    assert load_predictions(migrate(f"sqlite:///{tmp_path / 'empty.db'}")).empty


def _log_writes(engine, ages_hours: list[float], rows_each: int = 2) -> None:  # type: ignore[no-untyped-def]
    """One write per age (hours ago), oldest first, ``rows_each`` predictions each."""
    log = PredictionLog(engine, flush_seconds=0.01, max_rows_per_write=rows_each)
    log.start()
    now = time.time()
    for i, age in enumerate(ages_hours):
        rows = ROWS[:rows_each]
        log.offer(
            PredictionRecord(now - age * 3600, f"r{i}", "m", 1, rows, ["UP"] * rows_each, None)
        )
    log.close()


def _request_ids(engine) -> list[str]:  # type: ignore[no-untyped-def]
    frame = load_predictions(engine, limit=10**6)
    return [] if frame.empty else list(frame["request_id"].unique())


def test_retention_by_age_deletes_old_writes_in_bounded_passes(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'log.db'}")
    _log_writes(engine, [300, 250, 200, 190, 180, 2, 1])  # hours ago; 5 older than 7 days
    rule = Retention(max_age=timedelta(days=7), max_rows=None, batch_writes=2, max_batches=2)
    first = prune_predictions(engine, rule)
    assert (first.writes, first.rows, first.done) == (4, 8, False)  # bounded: 2 x 2 writes
    second = prune_predictions(engine, rule)
    assert (second.writes, second.done) == (1, True)
    assert _request_ids(engine) == ["r5", "r6"]
    assert prune_predictions(engine, rule) == PruneResult(0, 0, True)


def test_retention_by_count_keeps_the_newest_predictions(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'log.db'}")
    _log_writes(engine, [0.5] * 10, rows_each=3)  # 10 writes of 3 predictions
    rule = Retention(max_age=None, max_rows=10, batch_writes=4, max_batches=1)
    assert prune_predictions(engine, rule) == PruneResult(4, 12, False)
    assert prune_predictions(engine, rule) == PruneResult(3, 9, True)  # 3 writes of 3 kept
    assert _request_ids(engine) == ["r7", "r8", "r9"]


def test_writer_thread_applies_the_retention_and_counts_it(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'log.db'}")
    pruned: list[int] = []
    log = PredictionLog(
        engine,
        flush_seconds=0.02,
        retention=Retention(max_age=None, max_rows=4, interval_seconds=0.05),
        on_pruned=pruned.append,
    )
    log.start()
    for i in range(6):
        log.offer(PredictionRecord(time.time(), f"r{i}", "m", 1, ROWS[:2], ["UP", "UP"], None))
        time.sleep(0.05)  # separate writes
    deadline = time.monotonic() + 30
    while sum(pruned) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.close()
    assert sum(pruned) >= 8 and "r0" not in _request_ids(engine)


def test_prediction_log_in_its_own_database(make_app: AppFactory, tmp_path: Path) -> None:
    """IAC_PREDICTION_LOG_DATABASE_URL: the log goes there (migrated), not to the project DB."""
    log_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    app = make_app(
        project={"prediction_log_database_url": log_url},
        auth="disabled",
        prediction_log_flush_seconds=0.05,
    )
    with TestClient(app) as client:
        assert client.post("/predict", json=ROWS[0]).status_code == 200
    assert len(load_predictions(migrate(log_url))) == 1
    project = migrate(f"sqlite:///{(tmp_path / 'state' / 'ia_continu.db').resolve()}")
    assert load_predictions(project).empty
