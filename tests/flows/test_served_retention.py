"""The ``ingest_labels`` flow applies the served-predictions retention
(``IAC_SERVED_RETENTION_HOURS``): batched predictions past it are deleted, the rest stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.ingest_labels import ingest_labels
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.served import prune_served
from ia_continu.data.storage.tables import ServedPredictionRow
from ia_continu.settings import get_settings

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=10)


def _served(
    prediction_id: str, write_id: int, served_at: datetime, position: int | None
) -> ServedPredictionRow:
    return ServedPredictionRow(
        prediction_id=prediction_id,
        write_id=write_id,
        served_at=served_at,
        request_id=prediction_id,
        model_name="m",
        model_version=1,
        features={"feature1": 0.0, "feature2": 0.0},
        prediction="1",
        probability=0.9,
        label="1" if position is not None else None,
        position=position,
    )


def _store(url: str) -> None:
    with Session(migrate(url)) as session:
        session.add_all(
            [
                _served("old-batched-a", 1, OLD, 1),
                _served("old-batched-b", 2, OLD, 1),
                _served("old-unbatched", 2, OLD, None),  # not batched yet: kept
                _served("recent-batched", 3, NOW, 2),  # within the retention: kept
                _served("old-newest-write", 4, OLD, 2),  # the index's resume point: kept
            ]
        )
        session.commit()


def _left(url: str) -> set[str]:
    with Session(migrate(url)) as session:
        return set(session.scalars(select(ServedPredictionRow.prediction_id)))


KEPT = {"old-unbatched", "recent-batched", "old-newest-write"}


def test_the_flow_deletes_batched_predictions_past_the_retention(flow_env: Path) -> None:
    url = get_settings().resolved_database_url
    _store(url)
    result = ingest_labels()
    assert result["pruned"] == 2
    assert _left(url) == KEPT
    assert ingest_labels()["pruned"] == 0


def test_retention_zero_keeps_everything(flow_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IAC_SERVED_RETENTION_HOURS", "0")
    get_settings.cache_clear()
    url = get_settings().resolved_database_url
    _store(url)
    assert ingest_labels()["pruned"] == 0
    assert len(_left(url)) == 5


def test_prune_is_bounded_per_call(flow_env: Path) -> None:
    url = get_settings().resolved_database_url
    _store(url)
    engine = migrate(url)
    assert prune_served(engine, NOW - timedelta(days=1), max_rows=1) == 1
    assert prune_served(engine, NOW - timedelta(days=1), max_rows=1) == 1
    assert prune_served(engine, NOW - timedelta(days=1), max_rows=1) == 0
    assert _left(url) == KEPT
