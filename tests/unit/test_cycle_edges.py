"""Edge cases of the cycle's I/O: metric names MLflow accepts, retried persistence."""

from __future__ import annotations

from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_metric_name

from ia_continu import cycle
from ia_continu.settings import Settings
from ia_continu.storage import repository
from ia_continu.storage.schema import get_engine


def test_metric_key_makes_any_column_name_valid() -> None:
    for name in ["price (eur)", "a:b", "naïve%", "x" * 400, "ok_name-1.2/3"]:
        _validate_metric_name(cycle.metric_key(name))
    assert cycle.metric_key("ok_name-1.2/3") == "ok_name-1.2/3"


def test_retried_persist_logs_one_mlflow_run(settings: Settings) -> None:
    cycle.ingest(settings, "k0")
    report = cycle.evaluate_drift(cycle.load_drift_inputs(settings), settings)
    first = cycle.persist_drift_report(settings, report)
    again = cycle.persist_drift_report(settings, report)
    assert first == again
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], f"tags.drift_report_id = '{first}'")
    assert len(runs) == 1
    stored = repository.get_drift_report(get_engine(settings.resolved_database_url), first)
    assert stored["mlflow_run_id"] == runs[0].info.run_id


def test_lasting_data_drift_is_new_only_once(settings: Settings) -> None:
    shifted = settings.model_copy(
        update={"synthetic_mode": "covariate_shift", "synthetic_period_batches": 2}
    )
    flags = []
    for i in range(6):
        cycle.ingest(shifted, f"k{i}")
        report = cycle.evaluate_drift(cycle.load_drift_inputs(shifted), shifted)
        cycle.persist_drift_report(shifted, report)
        if report["decision"]["retrain"]:
            window = cycle.load_training_window(shifted)
            model, decision = cycle.train_and_gate(window, shifted)
            cycle.record_challenger(
                shifted, window, model, decision, trigger="bootstrap", drift_report_id=report["id"]
            )
        data = report["data_drift"]
        flags.append((bool(data and data["drift"]), report["data_drift_new"]))
    # Positions 2-3 are shifted (period 1 of 2 batches); 4-5 are not.
    assert flags[2] == (True, True)
    assert flags[3] == (True, False)
    assert not flags[4][0] and not flags[4][1]


def test_single_class_window_rejects_the_challenger_and_keeps_the_champion(
    settings: Settings,
) -> None:
    import pandas as pd
    import pytest

    from ia_continu import registry
    from ia_continu.sources import SyntheticSource
    from ia_continu.training import train

    source = SyntheticSource(batch_size=200)
    champion_model = train(source.batch(0), source.schema)
    one_class = source.batch(1).assign(target=1).assign(batch_id=1)
    holdout = source.batch(2).assign(batch_id=2)
    window = cycle.TrainingWindow(
        source=source.name,
        schema=source.schema,
        train=one_class,
        holdout=holdout,
        training_batch_ids=[1],
        holdout_batch_id=2,
        champion=registry.ModelRef("m", 1, None, 0.9, [0]),
        champion_model=champion_model,
    )
    challenger, decision = cycle.train_and_gate(window, settings)
    assert challenger is None and not decision["promote"]
    assert "single class" in decision["reason"]
    assert decision["champion_accuracy"] > 0.8
    outcome = cycle.record_challenger(
        settings, window, None, decision, trigger="drift", drift_report_id=None
    )
    assert not outcome["promoted"] and outcome["run_id"] is None

    no_champion = cycle.TrainingWindow(
        source.name, source.schema, one_class, holdout, [1], 2, None, None
    )
    with pytest.raises(ValueError, match="single class"):
        cycle.train_and_gate(no_champion, settings)
    assert isinstance(holdout, pd.DataFrame)
