"""Fault class "poisoned batch": NaN, infinity, text in a numeric column, one row, one class.

The real ``continuous_training`` flow runs cycle after cycle (Prefect test harness, MLflow
in a SQLite file, a local fake Discord) on a replayed CSV poisoned at chosen positions:

====== =========================================== ==========================
 pos    poison                                      expected
====== =========================================== ==========================
 2      empty ``x1`` cell (NaN), row 7              quarantined: missing
 4      ``inf`` in ``x2``, row 3                    quarantined: infinite
 5      text in ``x1``, row 10                      quarantined: not a number
 6      every label ``UP`` (one class)              stored (valid data)
 9      the file's last batch: a single row         quarantined: too few rows
====== =========================================== ==========================

Asserted: each poisoned batch is quarantined with its reason (column + row, no cell
value), the operator gets one Discord embed per quarantined batch, the stream positions
of stored + quarantined batches are contiguous and unique, no drift check or retrain ever
saw a quarantined batch, every champion's signature stays numeric, the champion keeps
serving, and every cycle completes (the loop goes on).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flows.continuous_training import continuous_training
from ia_continu.data.sources import build_source
from ia_continu.data.storage import repository
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import DriftReportRow
from ia_continu.settings import get_settings
from ia_continu.training import registry
from tests.utils.fake_discord import FakeDiscord

pytestmark = [pytest.mark.faults, pytest.mark.integration]

BATCH = 50
SECRET_TEXT = "twelve-and-a-half"  # a cell value that must appear in no message


def poisoned_csv(path: Path) -> Path:
    """9 batches of 50 rows and a last batch of one row, poisoned as the module says."""
    rng = np.random.default_rng(11)
    n = 9 * BATCH + 1
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    label = np.where(x1 + x2 > 0, "UP", "DOWN")
    frame = pd.DataFrame(
        {
            "t": np.arange(n),
            "day": rng.integers(1, 8, n),
            "x1": x1.round(6).astype(object),
            "x2": x2.round(6).astype(object),
            "label": label,
        }
    )
    frame.loc[2 * BATCH + 7, "x1"] = None
    frame.loc[4 * BATCH + 3, "x2"] = "inf"
    frame.loc[5 * BATCH + 10, "x1"] = SECRET_TEXT
    frame.loc[6 * BATCH : 7 * BATCH - 1, "label"] = "UP"
    frame.to_csv(path, index=False)
    return path


EXPECTED = {
    2: "column 'x1' row 7: missing",
    4: "column 'x2' row 3: infinite",
    5: "column 'x1' row 10: not a number",
    9: "batch: too few labelled rows: 1 < IAC_MIN_BATCH_ROWS=30",
}


@pytest.fixture
def stream_env(
    _prefect: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, discord: FakeDiscord
) -> Path:
    env = {
        "IAC_DATA_DIR": str(tmp_path / "state"),
        "IAC_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "IAC_DATA_SOURCE": "replay",
        "IAC_REPLAY_PATH": str(poisoned_csv(tmp_path / "poisoned.csv")),
        "IAC_REPLAY_TARGET": "label",
        "IAC_REPLAY_TIME_COLUMN": "t",
        "IAC_REPLAY_CATEGORICAL_COLUMNS": "day",
        "IAC_REPLAY_CLASSES": "UP,DOWN",
        "IAC_REPLAY_LOOP": "true",
        "IAC_BATCH_SIZE": str(BATCH),
        "IAC_MIN_BATCH_ROWS": "30",
        "IAC_TRAINING_WINDOW_BATCHES": "2",
        "IAC_DISCORD_WEBHOOK_URL": discord.url,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    migrate(get_settings().resolved_database_url)  # as the bootstrap does before any flow
    return tmp_path


def _embeds(discord: FakeDiscord) -> list[dict[str, Any]]:
    return [embed for message in discord.received for embed in message.get("embeds", [])]


def _signature_types(name: str, version: int) -> dict[str, str]:
    info = mlflow.models.get_model_info(f"models:/{name}/{version}")
    assert info.signature is not None and info.signature.inputs is not None
    return {str(c.name): c.type.name for c in info.signature.inputs.inputs}


def test_poisoned_batches_are_quarantined_and_the_loop_goes_on(
    stream_env: Path, discord: FakeDiscord
) -> None:
    settings = get_settings()
    results = [continuous_training() for _ in range(11)]  # positions 0..10 (10 = 0 again)
    results.append(continuous_training(force_retrain=True))  # position 11: retrain after it all

    # Every cycle completed and took exactly the next position.
    assert [r.batch.position for r in results] == list(range(12))
    held = {r.batch.position: r.batch for r in results if r.batch.quarantined}
    assert sorted(held) == sorted(EXPECTED)
    for position, batch in held.items():
        assert batch.reason == f"1 failure(s): {EXPECTED[position]}"
        assert batch.batch_id is None
        # No drift check and no retrain on a quarantined batch (the 1-row one included).
        assert results[position].drift is None and results[position].retrain is None

    engine = migrate(settings.resolved_database_url)
    name = build_source(settings).name
    # No batch lost or duplicated: stored + quarantined positions are 0..11, once each.
    assert repository.stream_positions(engine, name) == list(range(12))
    assert repository.count_batches(engine, name) == 12 - len(EXPECTED)
    stored = {b.id: b.position for b in repository.latest_batches(engine, name, 100)}
    assert not set(stored.values()) & set(EXPECTED)
    quarantined = repository.quarantined_batches(engine, name)
    assert [(q.position, q.reason) for q in quarantined] == [
        (p, f"1 failure(s): {EXPECTED[p]}") for p in sorted(EXPECTED)
    ]
    # The rows are kept: the text cell is there, in the quarantine table only.
    raw = repository.load_quarantined_frame(engine, held[5].quarantine_id)
    assert raw["x1"].iloc[10] == SECRET_TEXT and len(raw) == BATCH

    # One drift report per stored batch; windows never hold a quarantined batch.
    with Session(engine) as session:
        reports = session.scalars(select(DriftReportRow)).all()
        assert len(reports) == int(session.scalar(select(func.count(DriftReportRow.id))) or 0)
    assert len(reports) == 12 - len(EXPECTED)
    for report in reports:
        assert set(report.report["current_batch_ids"]) <= set(stored)
        assert set(report.report["reference_batch_ids"]) <= set(stored)

    # The one-class batch (position 6) is valid data: stored, checked, never trained on alone.
    assert results[6].batch.quarantined is False and results[6].drift is not None
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment is not None
    retrains = client.search_runs([experiment.experiment_id], "tags.kind = 'retrain'")
    assert retrains, "the bootstrap and the forced retrain log challengers"
    for run in retrains:
        assert int(run.data.params["train_rows"]) >= 30
        lineage = client.download_artifacts(run.info.run_id, "lineage.json")
        training_ids = pd.read_json(lineage, typ="series")["training_batch_ids"]
        assert set(training_ids) <= set(stored)
        labels = repository.load_frame(engine, list(training_ids))["label"]
        assert labels.nunique() == 2, "a challenger was trained on a single class"

    # Every registered version, the champion included, takes numbers for x1 and x2.
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    versions = client.search_model_versions(f"name = '{settings.registered_model_name}'")
    assert versions
    for version in versions:
        types = _signature_types(settings.registered_model_name, int(version.version))
        assert types["x1"] == "double" and types["x2"] == "double", types
    champion = registry.get_alias(client, settings.registered_model_name)
    assert champion is not None
    model = registry.load_model(champion.uri, settings.mlflow_tracking_uri)
    clean = build_source(settings).batch(0)
    assert len(model.predict(clean[["day", "x1", "x2"]])) == BATCH

    # The operator is told: one warning embed per quarantined batch, with its reason.
    quarantine_embeds = [e for e in _embeds(discord) if "quarantined" in e.get("title", "")]
    assert len(quarantine_embeds) == len(EXPECTED)
    for embed, position in zip(quarantine_embeds, sorted(EXPECTED), strict=True):
        assert embed["title"] == f"Batch at position {position} quarantined"
        assert EXPECTED[position] in embed["description"]
    # No cell value reaches Discord.
    assert SECRET_TEXT not in str(discord.received)


def test_a_retried_cycle_does_not_quarantine_twice_nor_alert_twice(
    stream_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A flow run retried with the same ingest key finds its quarantined batch again."""
    from flows.generate import generate

    caplog.set_level(logging.INFO, logger="prefect")
    for key in ("p0", "p1"):
        assert generate(ingest_key=key).quarantined is False
    first = generate(ingest_key="p2")
    # The operator's log line: a warning naming the position and the reason.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "batch quarantined" in m and "position 2" in m and EXPECTED[2] in m for m in warnings
    ), warnings
    again = generate(ingest_key="p2")
    assert first.quarantined and again.quarantined
    assert (again.quarantine_id, again.position, again.created) == (
        first.quarantine_id,
        2,
        False,
    )
    assert generate(ingest_key="p3").position == 3
    settings = get_settings()
    engine = migrate(settings.resolved_database_url)
    assert repository.stream_positions(engine, build_source(settings).name) == [0, 1, 2, 3]
    from ia_continu.notify.events import cycle_notices as events

    assert events(None, None, again) == []  # already announced by the first attempt
    assert len(events(None, None, first)) == 1
