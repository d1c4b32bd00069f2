"""Edge cases of the cycle's I/O: metric names MLflow accepts, retried persistence."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_metric_name

from ia_continu.data.storage import repository
from ia_continu.data.storage.migrate import migrate
from ia_continu.loop import cycle
from ia_continu.settings import Settings


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
    stored = repository.get_drift_report(migrate(settings.resolved_database_url), first)
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
        if report.decision.retrain:
            window = cycle.load_training_window(shifted)
            model, decision = cycle.train_and_gate(window, shifted)
            cycle.record_challenger(
                shifted, window, model, decision, trigger="bootstrap", drift_report_id=report.id
            )
        data = report.data_drift
        flags.append((bool(data and data.drift), report.data_drift_new))
    # Positions 2-3 are shifted (period 1 of 2 batches); 4-5 are not.
    assert flags[2] == (True, True)
    assert flags[3] == (True, False)
    assert not flags[4][0] and not flags[4][1]


def test_single_class_window_rejects_the_challenger_and_keeps_the_champion(
    settings: Settings,
) -> None:
    import pandas as pd
    import pytest

    from ia_continu.data.sources import SyntheticSource
    from ia_continu.training import registry
    from ia_continu.training.trainer import train

    source = SyntheticSource(batch_size=200)
    champion_model = train(source.batch(0), source.schema)
    one_class = source.batch(1).assign(target=1).assign(batch_id=1)
    holdout = source.batch(2).assign(batch_id=2)
    window = _window(one_class, holdout, registry.ModelRef("m", 1, None, 0.9, [0]), champion_model)
    challenger, decision = cycle.train_and_gate(window, settings)
    assert challenger is None and not decision.promote
    assert "single class" in decision.reason
    assert decision.champion_accuracy > 0.8
    outcome = cycle.record_challenger(
        settings, window, None, decision, trigger="drift", drift_report_id=None
    )
    assert not outcome.promoted and outcome.run_id is None

    no_champion = _window(one_class, holdout)
    with pytest.raises(ValueError, match="single class"):
        cycle.train_and_gate(no_champion, settings)
    assert isinstance(holdout, pd.DataFrame)


def _window(train_frame, holdout, champion=None, champion_model=None):  # type: ignore[no-untyped-def]
    import pandas as pd

    from ia_continu.data.sources import SyntheticSource

    source = SyntheticSource(batch_size=200)
    frame = pd.concat([train_frame, holdout], ignore_index=True)
    return cycle.TrainingWindow(
        source=source.name,
        schema=source.schema,
        frame=frame,
        batch_ids=sorted(int(b) for b in frame["batch_id"].unique()),
        champion=champion,
        champion_model=champion_model,
    )


def test_first_model_on_a_one_class_holdout_is_not_promoted(settings: Settings) -> None:
    """A 99 %-one-class window: the model scores 1.000 on a single-class hold-out, as does
    always answering the majority class; it proves nothing and must not bootstrap."""
    import pandas as pd

    from ia_continu.data.sources import SyntheticSource
    from ia_continu.training import registry

    source = SyntheticSource(batch_size=200)
    frame = source.batch(0)
    frame = frame.assign(target=[1 if i % 100 else 0 for i in range(len(frame))], batch_id=0)
    train_rows, holdout = frame.iloc[:150], frame.iloc[150:]
    assert holdout["target"].nunique() == 1 and train_rows["target"].nunique() == 2
    window = _window(train_rows, holdout)
    challenger, decision = cycle.train_and_gate(window, settings)
    assert challenger is not None
    assert decision.challenger_accuracy == 1.0
    assert not decision.promote
    assert decision.baseline_accuracy == 1.0
    assert "single class" in decision.reason and "baseline" in decision.reason
    outcome = cycle.record_challenger(
        settings, window, challenger, decision, trigger="bootstrap", drift_report_id=None
    )
    assert not outcome.promoted and outcome.version is None
    client = registry.client(settings.mlflow_tracking_uri)
    assert registry.get_alias(client, settings.registered_model_name) is None
    assert client.get_run(outcome.run_id).data.tags["promoted"] == "false"
    assert isinstance(holdout, pd.DataFrame)


def test_min_lift_over_baseline_applies_with_and_without_a_champion(settings: Settings) -> None:
    from ia_continu.data.sources import SyntheticSource
    from ia_continu.training import registry
    from ia_continu.training.trainer import majority_accuracy, train

    source = SyntheticSource(batch_size=200)
    holdout = source.batch(1).assign(batch_id=1)
    baseline = majority_accuracy(holdout, source.schema)
    assert 0.4 < baseline < 0.6
    champion = registry.ModelRef("m", 1, None, 0.9, [0])
    weak_champion = train(source.batch(3).assign(feature2=0.0), source.schema)
    for ref, model in [(None, None), (champion, weak_champion)]:
        window = _window(source.batch(0).assign(batch_id=0), holdout, ref, model)
        _, loose = cycle.train_and_gate(window, settings)
        assert loose.promote, loose
        assert loose.baseline_accuracy == baseline
        strict = settings.model_copy(update={"promotion_min_lift_over_baseline": 0.5})
        _, refused = cycle.train_and_gate(window, strict)
        assert not refused.promote
        assert f"majority-class baseline {baseline:.3f}" in refused.reason


def test_a_challenger_that_loads_back_differently_is_not_promoted(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry must hand back the model that was scored: a different one is refused."""
    from sklearn.dummy import DummyClassifier

    from ia_continu.data.sources import SyntheticSource
    from ia_continu.training import registry

    source = SyntheticSource(batch_size=200)
    window = _window(source.batch(0).assign(batch_id=0), source.batch(1).assign(batch_id=1))
    challenger, decision = cycle.train_and_gate(window, settings)
    assert decision.promote, decision
    holdout = window.holdout
    other = DummyClassifier(strategy="constant", constant=0).fit(
        holdout[list(source.schema.features)], holdout["target"]
    )
    monkeypatch.setattr(registry, "load_fresh", lambda *_args: other, raising=False)
    outcome = cycle.record_challenger(
        settings, window, challenger, decision, trigger="bootstrap", drift_report_id=None
    )
    assert not outcome.promoted and outcome.version == 1
    assert "not promoted" in outcome.reason and "scores" in outcome.reason
    client = registry.client(settings.mlflow_tracking_uri)
    name = settings.registered_model_name
    assert registry.get_alias(client, name) is None
    tags = client.get_model_version(name, "1").tags
    assert "scores" in tags["rejected_reason"]
    assert client.get_run(outcome.run_id).data.tags["promoted"] == "false"


class _CountingHandler(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_flow_mlflow_calls_retry_a_bounded_number_of_times(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's default is 7 retries with backoff (minutes); a flow process makes
    ``1 + IAC_MLFLOW_HTTP_MAX_RETRIES`` attempts, then fails for Prefect to retry."""
    from mlflow.exceptions import MlflowException

    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(key, "x")  # so that monkeypatch restores the original value
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "x")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        bounded = settings.model_copy(
            update={
                "mlflow_tracking_uri": f"http://127.0.0.1:{server.server_address[1]}",
                "mlflow_http_max_retries": 1,
                "mlflow_http_timeout_seconds": 5,
            }
        )
        cycle.ingest(bounded, "k0")
        with pytest.raises(MlflowException):
            cycle.load_drift_inputs(bounded)
    finally:
        server.shutdown()
        server.server_close()
    assert _CountingHandler.hits == 2
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"


def test_a_three_class_stream_is_gated_with_accuracy_and_macro_f1(settings: Settings) -> None:
    """String labels, three classes: the gate's figures include macro-F1 of both models."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import f1_score

    from ia_continu.data.sources import Schema

    schema = Schema(features=("x",), categorical=(), target="label")
    rng = np.random.default_rng(0)

    def batch(i: int) -> pd.DataFrame:
        x = rng.uniform(0, 3, 200)
        label = np.array(["low", "mid", "high"])[np.minimum(x.astype(int), 2)]
        return pd.DataFrame({"x": x, "label": label, "batch_id": i})

    frame = pd.concat([batch(0), batch(1)], ignore_index=True)
    window = cycle.TrainingWindow("three", schema, frame, [0, 1], None, None)
    model, decision = cycle.train_and_gate(window, settings)
    assert decision.promote and decision.challenger_accuracy > 0.9
    holdout = frame[frame["batch_id"] == 1]
    expected = f1_score(holdout["label"], model.predict(holdout[["x"]]), average="macro")
    assert decision.challenger_macro_f1 > 0.9
    assert "champion_macro_f1" not in decision
    assert abs(decision.challenger_macro_f1 - expected) < 0.05
