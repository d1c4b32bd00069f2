"""The loop on served traffic, for real: clients -> API -> prediction log -> label files
-> ``ingest_labels`` -> ``continuous_training`` (``IAC_DATA_SOURCE=serving``) -> new
champion -> API.

Real Prefect and MLflow servers, the ``prefect.yaml`` deployments on a process pool, the
real ``python -m api`` and the traffic simulator (``bench.traffic``) posting a stream
whose concept flips at a known position, with the true labels dropped into the inbox
``SIM_LABEL_DELAY`` seconds after each answer. Cycles (``ingest_labels`` then
``continuous_training``) are triggered back to back through the Prefect API, as the two
schedules would run them, so the test never waits on a schedule.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.traffic import TrafficSimulator
from ia_continu.data.sources import SyntheticSource
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import (
    BatchRow,
    DriftReportRow,
    LabelFileRow,
    QuarantinedLabelRow,
    ServedPredictionRow,
    ServingReportRow,
)
from tests.utils.deployed import bootstrap_paused, loop_env
from tests.utils.fake_discord import FakeDiscord
from tests.utils.live_api import api_process
from tests.utils.servers import BIN, Stack, prefect_and_mlflow, spawn, stop, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500, func_only=True)]

ROOT = Path(__file__).resolve().parents[2]
POOL = "it-serving-pool"
MODEL = "it-serving-classifier"
SOURCE = f"serving:{MODEL}"
ROWS_PER_POSITION = 150  # simulator stream: 10 s of traffic per position at RATE
RATE = 15.0  # rows per second
ROWS_PER_REQUEST = 5
DRIFT_POSITION = 4  # positions 1-3 follow the seed's concept, 4 onwards the flipped one
SIM_LABEL_DELAY = 50.0  # seconds from an answer to its label file: two cycles of ~25 s
# The loop waits this long before batching a prediction: the simulator's delay plus
# headroom for the label to be ingested before the batch is made.
LABEL_DELAY = 70.0
RELOAD_INTERVAL = 2.0
DEADLINE = 600.0  # for the new champion to answer, from the start of the traffic


class AbruptDrift:
    """The synthetic stream with its labelling rule flipped from ``DRIFT_POSITION`` on,
    for good (``SyntheticSource``'s own drift comes back every other period)."""

    def __init__(self) -> None:
        self.before = SyntheticSource(
            "concept_drift", seed=7, batch_size=ROWS_PER_POSITION, period_batches=10_000
        )
        self.after = SyntheticSource(
            "concept_drift", seed=7, batch_size=ROWS_PER_POSITION, period_batches=1
        )
        self.schema = self.before.schema
        self.name = "abrupt-drift"

    def batch(self, position: int) -> pd.DataFrame:
        if position < DRIFT_POSITION:
            return self.before.batch(position)
        return self.after.batch(2 * position + 1)  # odd positions: the flipped rule


@dataclass
class Cycle:
    started: float
    ended: float
    champion: int | None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with prefect_and_mlflow(tmp_path_factory.mktemp("serving-stack")) as running:
        yield running


def _env(stack: Stack, webhook: str) -> dict[str, str]:
    return loop_env(
        stack,
        webhook,
        MODEL,
        IAC_DATA_SOURCE="serving",
        IAC_SERVING_SEED_SOURCE="synthetic",
        IAC_SYNTHETIC_MODE="concept_drift",
        IAC_SYNTHETIC_SEED="7",
        IAC_SYNTHETIC_PERIOD_BATCHES="10000",
        IAC_BATCH_SIZE="600",
        IAC_LABEL_DELAY=str(LABEL_DELAY),
        IAC_LABELS_SETTLE_SECONDS="0.5",
        IAC_CHALLENGE_EVERY_CYCLES="0",  # retrain on drift only: the trigger is unambiguous
    )


def _run(deployment: str) -> None:
    """Trigger a flow run of ``deployment`` and wait for it to complete (results are not
    persisted: what a run did is read back from the database and the registry)."""
    from prefect.deployments import run_deployment

    run = run_deployment(deployment, timeout=300)
    assert run.state is not None and run.state.is_completed(), (deployment, run.state)


def _champion(client: MlflowClient) -> int | None:
    try:
        return int(client.get_model_version_by_alias(MODEL, "champion").version)
    except Exception:  # no alias yet
        return None


def _counts(url: str) -> dict[str, int]:
    engine = migrate(url)
    with Session(engine) as session:
        served = session.scalar(select(func.count()).select_from(ServedPredictionRow)) or 0
        labelled = (
            session.scalar(
                select(func.count())
                .select_from(ServedPredictionRow)
                .where(ServedPredictionRow.label.is_not(None))
            )
            or 0
        )
        quarantined = session.scalar(select(func.count()).select_from(QuarantinedLabelRow)) or 0
    return {"served": served, "labelled": labelled, "quarantined": quarantined}


def _label_files(url: str) -> int:
    with Session(migrate(url)) as session:
        return session.scalar(select(func.count()).select_from(LabelFileRow)) or 0


def test_served_traffic_drives_the_loop_with_delayed_labels(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    with FakeDiscord() as discord:
        env = _env(stack, discord.url)
        for key, value in env.items():
            if key.startswith(("IAC_", "PREFECT_")):
                monkeypatch.setenv(key, value)
        db_url = f"sqlite:///{stack.home / 'state' / 'ia_continu.db'}"
        inbox = stack.home / "state" / "labels"
        bootstrap_paused(env, POOL, stack.prefect_api_url, request)
        worker = spawn(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
            stack.home / "worker.log",
            env,
        )
        request.addfinalizer(lambda: stop(worker))

        # The seed cycle: batch 0 of the seed source trains the first champion.
        client = MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
        _run("continuous_training/continuous-training")
        assert _champion(client) == 1

        api_env = {
            **{k: v for k, v in env.items() if k.startswith("IAC_")},
            "IAC_API_AUTH": "disabled",
            "IAC_API_RELOAD_INTERVAL_SECONDS": str(RELOAD_INTERVAL),
        }
        with api_process(api_env, stack.home / "api.log") as api:
            wait_until(
                lambda: httpx.get(f"{api.url}/ready", timeout=5).status_code == 200,
                "the API serving the seed champion",
                120,
                ignore=(httpx.HTTPError,),
            )
            simulator = TrafficSimulator(
                api.url,
                AbruptDrift(),
                inbox,
                start_position=1,
                rows_per_request=ROWS_PER_REQUEST,
                rate=RATE,
                label_delay=SIM_LABEL_DELAY,
                run_id="it",
            )
            cycles: list[Cycle] = []
            with simulator:  # started here, stopped on the way out whatever happens
                traffic_started = time.time()
                while 2 not in simulator.stats.model_versions:
                    assert time.time() - traffic_started < DEADLINE, (
                        "no answer from a new champion",
                        cycles,
                        api.log_text()[-3000:],
                    )
                    started = time.time()
                    _run("ingest_labels/ingest-labels")
                    _run("continuous_training/continuous-training")
                    cycles.append(Cycle(started, time.time(), _champion(client)))
                    # Let the simulator see a promotion of this cycle before the next one.
                    if cycles[-1].champion != 1:
                        wait_until(
                            lambda: 2 in simulator.stats.model_versions,
                            "an answer from the new champion",
                            30 + 3 * RELOAD_INTERVAL,
                        )
                stats = simulator.stop(flush_labels=True)
            time.sleep(2)  # the API's prediction-log writer flushes every 0.2 s

        # Every label lands: one more ingestion once the last files are written.
        time.sleep(1)
        _run("ingest_labels/ingest-labels")
        answered = [r for r in simulator.sent_requests if r.status == 200]
        served_ids = [i for r in answered for i in r.ids]
        assert len(served_ids) == len(set(served_ids)) == stats.rows_served
        assert stats.labels_written == stats.rows_served, stats
        counts = _counts(db_url)
        # None lost, none duplicated: one served row per answered row, each labelled once.
        assert counts == {
            "served": stats.rows_served,
            "labelled": stats.rows_served,
            "quarantined": 0,
        }, (counts, stats)
        truth = pd.concat(
            pd.read_csv(p, dtype=str) for p in sorted((inbox / "processed").glob("labels-*"))
        )
        engine = migrate(db_url)
        with Session(engine) as session:
            joined = dict(
                session.execute(
                    select(ServedPredictionRow.prediction_id, ServedPredictionRow.label)
                ).all()
            )
        assert dict(zip(truth["prediction_id"], truth["label"], strict=True)) == joined

        # Re-sent files change nothing.
        for path in sorted((inbox / "processed").glob("labels-*")):
            shutil.copy(path, inbox / f"resent-{path.name}")
        files_before = _label_files(db_url)
        time.sleep(1)
        _run("ingest_labels/ingest-labels")
        assert _counts(db_url) == counts
        assert _label_files(db_url) == files_before == stats.label_files
        resent = sorted(p.name for p in (inbox / "processed").glob("resent-*"))
        assert len(resent) == stats.label_files  # recognised by content, moved, not joined
        assert not [p for p in inbox.iterdir() if p.is_file()]
        with Session(engine) as session:
            after = dict(
                session.execute(
                    select(ServedPredictionRow.prediction_id, ServedPredictionRow.label)
                ).all()
            )
        assert after == joined

        # Concept drift was detected on the served traffic, and a challenger trained on
        # served batches was promoted.
        with Session(engine) as session:
            flagged = session.scalars(
                select(DriftReportRow)
                .where(DriftReportRow.source == SOURCE, DriftReportRow.concept_drift)
                .order_by(DriftReportRow.created_at)
            ).all()
            positions = dict(
                session.execute(
                    select(BatchRow.id, BatchRow.position).where(BatchRow.source == SOURCE)
                ).all()
            )
            reports = session.scalars(select(ServingReportRow)).all()
        assert flagged, cycles
        champion = client.get_model_version_by_alias(MODEL, "champion")
        assert int(champion.version) == 2
        assert champion.tags["trigger"] == "drift"
        trained_on = [int(i) for i in champion.tags["training_batch_ids"].split(",")]
        assert any(positions[i] >= 1 for i in trained_on), (trained_on, positions)
        # The unlabelled window was watched every cycle: estimated, then realised accuracy.
        assert len(reports) >= len(cycles) - 1
        assert any(r.estimated_accuracy is not None for r in reports)
        assert any(r.realised_accuracy is not None for r in reports)

        # The figure: first served request of the flipped concept -> first answer of the
        # new champion, against label delay + 2 cycles + the API's poll interval.
        drift_served = stats.first_served[DRIFT_POSITION]
        new_answer = stats.model_versions[2]
        durations = [c.ended - c.started for c in cycles]
        cycle_seconds = sum(durations) / len(durations)
        target = LABEL_DELAY + 2 * cycle_seconds + RELOAD_INTERVAL
        figure = {
            "drift_to_new_champion_seconds": round(new_answer - drift_served, 1),
            "target_seconds": round(target, 1),
            "label_delay_seconds": LABEL_DELAY,
            "simulator_label_delay_seconds": SIM_LABEL_DELAY,
            "simulator_label_delay_cycles": round(SIM_LABEL_DELAY / cycle_seconds, 2),
            "mean_cycle_seconds": round(cycle_seconds, 1),
            "cycles": len(cycles),
            "rows_served": stats.rows_served,
            "labels_joined": counts["labelled"],
            "label_files": stats.label_files,
            "resent_files": len(resent),
            "first_flagged_batch_position": positions[flagged[0].batch_id],
        }
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "serving-loop.json").write_text(json.dumps(figure, indent=2, default=str))
        print(json.dumps(figure, indent=2, default=str))
        titles = [p["embeds"][0]["title"] for p in discord.received]
        assert any("promoted to champion" in t for t in titles), titles
