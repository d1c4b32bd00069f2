"""A few continuous-training cycles end to end: SQLite store, MLflow in a local SQLite file.

No server: MLflow tracking and registry both use ``sqlite:///…/mlflow.db`` under tmp_path,
artifacts land in ``./mlruns`` under tmp_path (the working directory of every test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from ia_continu.data.sources import SyntheticSource, build_source
from ia_continu.data.storage import repository
from ia_continu.data.storage.migrate import migrate
from ia_continu.loop import cycle
from ia_continu.loop.results import DriftReport, RetrainDecision, RetrainOutcome
from ia_continu.monitoring.concept_drift import ConceptDrift
from ia_continu.monitoring.data_drift import DataDriftReport, FeatureDrift
from ia_continu.settings import Settings
from ia_continu.training import registry
from tests.utils.mlflow_state import restored_mlflow_state


@pytest.fixture(autouse=True)
def _fresh_mlflow_state() -> Iterator[None]:
    """MLflow keeps process-wide state (tracking URI, experiment, the model cache)."""
    with restored_mlflow_state():
        yield


@dataclass
class CycleResult:
    """What one cycle did."""

    position: int
    batch_id: int
    report: DriftReport
    report_id: str
    outcome: RetrainOutcome | None


def _run_cycle(settings: Settings) -> CycleResult:
    """ingest -> drift inputs -> drift report -> persist -> (retrain -> gate -> record)."""
    ingested = cycle.ingest(settings)
    inputs = cycle.load_drift_inputs(settings)
    report = cycle.evaluate_drift(inputs, settings)
    report_id = cycle.persist_drift_report(settings, report)
    outcome = None
    if report.decision.trigger is not None:
        window = cycle.load_training_window(settings, report_id)
        challenger, decision = cycle.train_and_gate(window, settings)
        outcome = cycle.record_challenger(
            settings,
            window,
            challenger,
            decision,
            trigger=report.decision.trigger,
            drift_report_id=report_id,
        )
    assert ingested.batch_id is not None
    return CycleResult(ingested.position, ingested.batch_id, report, report_id, outcome)


def _version_tags(mlflow_client: MlflowClient, name: str, version: int) -> dict[str, str]:
    return dict(mlflow_client.get_model_version(name, str(version)).tags)


def _alias(mlflow_client: MlflowClient, name: str, alias: str) -> registry.ModelRef:
    ref = registry.get_alias(mlflow_client, name, alias)
    assert ref is not None, alias
    return ref


def _champion(mlflow_client: MlflowClient, name: str) -> registry.ModelRef:
    return _alias(mlflow_client, name, registry.CHAMPION)


def test_concept_drift_scenario(settings: Settings) -> None:
    assert settings.synthetic_period_batches == 4
    source = build_source(settings)
    assert isinstance(source, SyntheticSource)
    name = settings.registered_model_name
    mlflow_client = registry.client(settings.mlflow_tracking_uri)
    engine = migrate(settings.resolved_database_url)
    assert registry.get_alias(mlflow_client, name) is None  # empty registry
    with pytest.raises(LookupError, match="previous"):
        registry.rollback(mlflow_client, name)

    # --- cycle 0: no champion -> bootstrap version 1 -----------------------------------
    first = _run_cycle(settings)
    assert first.position == 0
    assert first.report.decision.model_dump() == {
        "retrain": True,
        "reason": "no champion yet",
        "trigger": "bootstrap",
    }
    assert first.report.data_drift is None
    assert first.report.performance is None
    assert first.outcome is not None
    assert first.outcome.promoted is True
    assert first.outcome.version == 1
    assert first.outcome.previous_version is None
    assert first.outcome.trigger == "bootstrap"
    assert first.outcome.drift_report_id == first.report_id
    champion = _champion(mlflow_client, name)
    assert champion.version == 1
    assert champion.uri == f"models:/{name}/1"
    assert champion.training_batch_ids == [first.batch_id]
    assert champion.source == source.name
    assert registry.get_alias(mlflow_client, name, registry.PREVIOUS) is None
    tags = _version_tags(mlflow_client, name, 1)
    assert {"validation_accuracy", "training_batch_ids", "trigger"} <= set(tags)
    assert tags["trigger"] == "bootstrap"
    assert tags["training_batch_ids"] == str(first.batch_id)
    assert float(tags["validation_accuracy"]) == pytest.approx(first.outcome.challenger_accuracy)
    assert float(tags["validation_accuracy"]) > 0.85
    assert champion.validation_accuracy == pytest.approx(float(tags["validation_accuracy"]))

    # The retrain run logged params, metrics, lineage and the model.
    retrain_run = mlflow_client.get_run(first.outcome.run_id)
    assert retrain_run.data.tags["kind"] == "retrain"
    assert retrain_run.data.tags["promoted"] == "true"
    assert retrain_run.data.params["estimator"] == "logistic_regression"
    assert "challenger_accuracy" in retrain_run.data.metrics
    lineage = mlflow.artifacts.load_dict(f"runs:/{first.outcome.run_id}/lineage.json")
    assert lineage["training_batch_ids"] == [first.batch_id]
    model = registry.load_model(champion.uri, settings.mlflow_tracking_uri)
    assert set(model.predict(source.batch(0)[list(source.schema.features)])) <= {0, 1}

    # --- cycles 1-3: same concept, no retrain ------------------------------------------
    stable = [_run_cycle(settings) for _ in range(3)]
    assert [c.position for c in stable] == [1, 2, 3]
    for result in stable:
        performance = result.report.performance
        assert performance is not None
        assert not performance.drift, performance
        assert performance.accuracy > 0.85
        assert result.report.decision.retrain is False
        assert result.report.champion_version == 1
        assert result.report.reference_batch_ids == [first.batch_id]
        assert result.report.data_drift is not None
        assert result.outcome is None
    assert _champion(mlflow_client, name).version == 1

    # Every drift report row points at its MLflow run, which holds the report and metrics.
    for result in [first, *stable]:
        stored = repository.get_drift_report(engine, result.report_id)
        assert stored["batch_id"] == result.batch_id
        assert stored["mlflow_run_id"]
        run = mlflow_client.get_run(stored["mlflow_run_id"])
        assert run.data.tags["kind"] == "drift_report"
        assert run.data.tags["drift_report_id"] == result.report_id
        artifacts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
        assert "drift_report.json" in artifacts
        logged = json.loads(
            mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/drift_report.json")
        )
        assert logged["id"] == result.report_id
        assert logged["decision"] == result.report.decision.model_dump()
        assert "retrain" in run.data.metrics
    metrics = mlflow_client.get_run(
        repository.get_drift_report(engine, stable[-1].report_id)["mlflow_run_id"]
    ).data.metrics
    for feature in source.schema.features:
        for key in ("statistic", "p_value", "p_adjusted", "effect", "psi", "drifted"):
            assert f"{feature}.{key}" in metrics, (feature, key)
    assert metrics["champion_accuracy"] == pytest.approx(stable[-1].report.performance.accuracy)
    assert metrics["concept_drift"] == 0.0

    # --- the period flips at position 4: performance drift, retrain, promotion ----------
    assert source.is_drifted_period(4)
    flipped = _run_cycle(settings)
    assert flipped.position == 4
    performance = flipped.report.performance
    assert performance.drift is True
    assert performance.p_value < settings.concept_drift_alpha
    assert performance.accuracy < performance.reference_accuracy - 0.2
    # The reference pooled the champion's validation rows with its first batches served.
    assert performance.reference_n > 200
    assert (
        performance.reference_batch_ids
        == [b.batch_id for b in stable][: settings.concept_drift_reference_batches]
    )
    assert performance.change_batch_id == flipped.batch_id
    assert flipped.report.decision.retrain is True
    assert flipped.report.decision.reason.startswith("concept drift: error ")
    assert repository.get_drift_report(engine, flipped.report_id)["concept_drift"] is True
    # Inputs did not move (concept drift only): no data drift expected.
    assert flipped.report.data_drift.drift is False

    # The first retrain holds out the newest (first drifted) batch and trains only on the
    # old concept, so whether it wins is a coin toss; later drifted batches enter the
    # training window and the challenger wins. Seed 42 promotes at position 4 already.
    promoted = flipped
    while not (promoted.outcome and promoted.outcome.promoted):
        assert promoted.position < 7, "no challenger promoted within 3 drifted batches"
        promoted = _run_cycle(settings)
    old_version = promoted.report.champion_version
    new_version = promoted.outcome.version
    assert new_version > old_version
    assert promoted.outcome.previous_version == old_version
    assert promoted.outcome.challenger_accuracy > promoted.outcome.champion_accuracy
    assert _champion(mlflow_client, name).version == new_version
    previous = registry.get_alias(mlflow_client, name, registry.PREVIOUS)
    assert previous is not None
    assert previous.version == old_version
    new_tags = _version_tags(mlflow_client, name, new_version)
    assert new_tags["trigger"] == "drift"
    assert new_tags["drift_report_id"] == promoted.report_id
    assert new_tags["training_batch_ids"] == ",".join(
        map(str, _champion(mlflow_client, name).training_batch_ids)
    )

    # --- rollback swaps champion and previous, twice gets back -------------------------
    assert registry.rollback(mlflow_client, name) == old_version
    assert _champion(mlflow_client, name).version == old_version
    assert _alias(mlflow_client, name, registry.PREVIOUS).version == new_version
    assert registry.rollback(mlflow_client, name) == new_version
    assert _champion(mlflow_client, name).version == new_version
    assert _alias(mlflow_client, name, registry.PREVIOUS).version == old_version


def test_ingest_key_makes_a_cycle_ingest_idempotent(settings: Settings) -> None:
    first = cycle.ingest(settings, ingest_key="flow-run-1")
    again = cycle.ingest(settings, ingest_key="flow-run-1")
    assert first.created is True
    assert again == first.model_copy(update={"created": False})
    assert cycle.ingest(settings).position == 1


def test_cycle_without_batches_raises_lookup_error(settings: Settings) -> None:
    with pytest.raises(LookupError, match="no batch ingested"):
        cycle.load_drift_inputs(settings)
    with pytest.raises(LookupError, match="no batch ingested"):
        cycle.load_training_window(settings)


def test_drift_metrics_skip_non_finite_values() -> None:
    def feature(name: str, effect: float, psi: float, drifted: bool) -> FeatureDrift:
        p = 0.0 if drifted else 0.9
        statistic = 1.0 if drifted else 0.01
        return FeatureDrift(name, "numeric", "ks", statistic, p, p, effect, psi, drifted)

    performance = ConceptDrift(
        accuracy=0.5,
        n=100,
        errors=50,
        reference_accuracy=0.9,
        reference_n=100,
        reference_errors=10,
        reference_batch_ids=[],
        statistic=6.0,
        p_value=0.0,
        dispersion=1.0,
        alpha=0.01,
        min_effect=0.02,
        drift=True,
        change_batch_id=3,
        reason="concept drift",
    )
    report = DriftReport(
        id="r",
        created_at=datetime.now(UTC),
        data_drift_new=True,
        source="s",
        batch_id=3,
        current_batch_ids=[3],
        reference_batch_ids=[0],
        champion_version=1,
        data_drift=DataDriftReport(
            n_reference=100,
            n_current=100,
            alpha=0.05,
            features=[
                feature("k", float("inf"), float("nan"), True),
                feature("x", 0.0, 0.0, False),
            ],
            drift=True,
            drifted_features=["k"],
        ),
        performance=performance,
        decision=RetrainDecision(retrain=True, reason="concept drift", trigger="drift"),
    )
    metrics = cycle.drift_metrics(report)
    assert metrics["retrain"] == 1.0
    assert metrics["data_drift"] == 1.0
    assert metrics["drift_share"] == 0.5
    assert "k.effect" not in metrics
    assert "k.psi" not in metrics
    assert metrics["k.statistic"] == 1.0
    assert metrics["k.drifted"] == 1.0
    assert metrics["x.drifted"] == 0.0
    assert metrics["champion_accuracy"] == 0.5
    assert metrics["concept_drift"] == 1.0
    quiet = report.model_copy(
        update={
            "data_drift": None,
            "performance": None,
            "decision": RetrainDecision(retrain=False, reason="no drift"),
        }
    )
    assert cycle.drift_metrics(quiet) == {"retrain": 0.0}


def _corrupt(mlflow_client: MlflowClient, name: str, version: int) -> None:
    """Overwrite the serialized model of ``version`` in the local artifact store."""
    source = mlflow_client.get_model_version(name, str(version)).source
    logged = mlflow_client.get_logged_model(source.rsplit("/", 1)[-1])
    artifacts = Path(urlparse(logged.artifact_location).path)
    model_files = [p for p in artifacts.glob("model.*") if p.suffix in (".skops", ".pkl")]
    assert model_files, sorted(p.name for p in artifacts.iterdir())
    for path in model_files:
        path.write_bytes(b"not a model")


def test_rollback_and_promotion_never_target_an_unloadable_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ia_continu import cli
    from tests.utils.models import register_version

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = "guarded"
    monkeypatch.setenv("IAC_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("IAC_REGISTERED_MODEL_NAME", name)
    mlflow_client = registry.client(uri)
    v1 = register_version(uri, name)
    v2 = register_version(uri, name, positions=(2, 3))
    assert (
        (_champion(mlflow_client, name).version, _alias(mlflow_client, name, "previous").version)
        == (v1 + 1, v1)
        == (v2, v1)
    )

    # A broken champion: rollback brings back v1 and does not keep v2 as a rollback target.
    _corrupt(mlflow_client, name, v2)
    assert cli.main(["rollback"]) == 0
    out = capsys.readouterr().out
    assert f"champion is now version {v1}" in out and "previous is unset" in out
    assert _champion(mlflow_client, name).version == v1
    assert registry.get_alias(mlflow_client, name, registry.PREVIOUS) is None

    # A broken previous: rollback refuses, nothing moves.
    v3 = register_version(uri, name, positions=(4, 5))
    assert _alias(mlflow_client, name, registry.PREVIOUS).version == v1
    _corrupt(mlflow_client, name, v1)
    with pytest.raises(registry.UnloadableModelError, match=f"version {v1} .* cannot be loaded"):
        registry.rollback(mlflow_client, name)
    assert cli.main(["rollback"]) == 1
    err = capsys.readouterr().err
    assert "rollback impossible" in err and "cannot be loaded" in err and "Traceback" not in err
    assert _champion(mlflow_client, name).version == v3
    assert _alias(mlflow_client, name, registry.PREVIOUS).version == v1

    # Promotion over a broken champion does not make it the rollback target.
    _corrupt(mlflow_client, name, v3)
    v4 = register_version(uri, name, positions=(6, 7), promote=False)
    assert registry.promote(mlflow_client, name, v4) == v3
    assert _champion(mlflow_client, name).version == v4
    assert _alias(mlflow_client, name, registry.PREVIOUS).version != v3


def test_a_champion_broken_after_promotion_is_replaced_not_fatal(settings: Settings) -> None:
    """Artifacts that break under a serving champion: the cycle reports it and retrains.

    Before, ``load_drift_inputs`` raised on every cycle and the loop never recovered.
    """
    mlflow_client = registry.client(settings.mlflow_tracking_uri)
    name = settings.registered_model_name
    first = _run_cycle(settings)
    assert first.outcome is not None and first.outcome.promoted, first.outcome
    broken = _champion(mlflow_client, name).version
    _corrupt(mlflow_client, name, broken)
    registry._load_model.cache_clear()  # a fresh flow process has no cached copy

    second = _run_cycle(settings)
    assert second.report.champion_problem is not None
    assert f"champion version {broken} cannot be loaded" in second.report.champion_problem
    assert second.report.decision.retrain
    assert "retrain to replace it" in second.report.decision.reason
    assert second.outcome is not None and second.outcome.promoted, second.outcome
    replacement = _champion(mlflow_client, name).version
    assert replacement != broken
    assert registry.is_loadable(mlflow_client, name, replacement)
    # The broken version is never kept as the rollback target.
    previous = registry.get_alias(mlflow_client, name, registry.PREVIOUS)
    assert previous is None or previous.version != broken

    third = _run_cycle(settings)
    assert third.report.champion_problem is None
    assert third.report.champion_version == replacement


def test_scheduled_challenge_reference_and_window_lineage_through_the_database(
    settings: Settings,
) -> None:
    """The schedule counts cycles from the stored drift reports, the reference pools the
    champion's served batches read back from them, and the window chosen reaches MLflow."""
    stable = settings.model_copy(update={"synthetic_mode": "stable", "challenge_every_cycles": 3})
    results = [_run_cycle(stable) for _ in range(4)]
    assert results[0].report.decision.trigger == "bootstrap"
    assert [r.report.decision.retrain for r in results[1:3]] == [False, False]
    scheduled = results[3]
    assert scheduled.report.decision.model_dump() == {
        "retrain": True,
        "reason": "scheduled challenge: 3 cycles since the last retrain "
        "(IAC_CHALLENGE_EVERY_CYCLES=3)",
        "trigger": "schedule",
    }
    performance = scheduled.report.performance
    # Validation rows of the bootstrap (its last quarter, 50 rows) + the two batches served.
    assert performance is not None
    assert performance.reference_batch_ids == [results[1].batch_id, results[2].batch_id]
    assert performance.reference_n == 50 + 2 * 200

    assert scheduled.outcome is not None and scheduled.outcome.trigger == "schedule"
    run = registry.client(stable.mlflow_tracking_uri).get_run(scheduled.outcome.run_id)
    window = run.data.params["window"]
    assert window.startswith("last_") and run.data.tags["window"] == window
    assert run.data.tags["window_reason"].startswith("most training rows within 1")
    assert {k for k in run.data.metrics if k.startswith("window_score.")}
    lineage = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/lineage.json"))
    assert lineage["window"] == window and lineage["window_scores"]

    # Only the first `head` and last `tail` served batches are read back.
    engine = migrate(stable.resolved_database_url)
    more = [_run_cycle(stable.model_copy(update={"challenge_every_cycles": 0})) for _ in range(4)]
    version = more[-1].report.champion_version
    served = [r.batch_id for r in [*results, *more] if r.report.champion_version == version]
    assert len(served) > 4
    scores = repository.champion_service(engine, scheduled.report.source, version, head=2, tail=2)
    assert [s.batch_id for s in scores] == [*served[:2], *served[-2:]]


@pytest.mark.parametrize("estimator", ["random_forest", "hist_gradient_boosting"])
def test_tree_estimators_are_registered_loaded_back_and_promoted(
    settings: Settings, estimator: str
) -> None:
    # MLflow 3 saves with skops, which refused tree models before their types were trusted.
    settings = settings.model_copy(update={"estimator": estimator})
    first = _run_cycle(settings)
    assert first.outcome is not None and first.outcome.promoted, first.outcome
    mlflow_client = registry.client(settings.mlflow_tracking_uri)
    champion = _champion(mlflow_client, settings.registered_model_name)
    model = registry.load_fresh(mlflow_client, champion.name, champion.version)
    batch = SyntheticSource(batch_size=20).batch(3)
    assert len(model.predict(batch[["feature1", "feature2"]])) == 20
    assert type(model.steps[-1][1]).__name__ in {
        "RandomForestClassifier",
        "HistGradientBoostingClassifier",
    }
