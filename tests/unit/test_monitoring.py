"""Serving monitoring (``ia_continu.monitoring.serving_monitor``): serving drift and CBPE before labels.

The pure part runs on a simulated world where the truth is known: two numeric features
~ N(0, I) and a categorical one, P(y=1 | x) = sigmoid(3 x0 - 2 x1), a champion trained
by the project's own pipeline, a calibrator fitted on held-out rows (with the champion's
outputs there, as ``cycle.fit_calibration`` stores them), and windows "served" by
running the champion as the API does (predicted class as text, top-class probability).
The I/O part runs on a real SQLite database and MLflow in a SQLite file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ia_continu.data import serving_source
from ia_continu.data.sources import Schema
from ia_continu.data.storage import repository
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import ServedPredictionRow
from ia_continu.loop import cycle, flow_metrics
from ia_continu.loop.results import GateResult, RetrainOutcome, ServingSummary
from ia_continu.monitoring import serving_monitor as monitoring
from ia_continu.monitoring.estimation import (
    CALIBRATOR_FORMAT,
    Calibrator,
    calibrator_from_dict,
    calibrator_to_dict,
    estimate_accuracy,
    fit_calibrator,
)
from ia_continu.notify.events import cycle_notices as events
from ia_continu.notify.events import serving_notices as serving_events
from ia_continu.settings import EstimatorName, Settings
from ia_continu.training import registry
from ia_continu.training.trainer import train
from tests.utils.mlflow_state import restored_mlflow_state
from tests.utils.serving import serve_champion, serve_model

SCHEMA = Schema(features=("x0", "x1", "day"), categorical=("day",), target="y", classes=(0, 1))
WEIGHTS = np.array([3.0, -2.0])
DAYS = np.array(["mon", "tue", "wed", "thu", "fri"])
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_mlflow_state() -> Iterator[None]:
    """MLflow keeps process-wide state (tracking URI, experiment, the model cache)."""
    with restored_mlflow_state():
        yield


def _draw(
    rng: np.random.Generator, n: int, *, spread: float = 1.0, shift: tuple[float, float] = (0, 0)
) -> pd.DataFrame:
    x = spread * rng.standard_normal((n, 2)) + np.asarray(shift)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(x @ WEIGHTS)))).astype(int)
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "day": rng.choice(DAYS, n), "y": y})


def _served(model: Any, rows: pd.DataFrame, *, version: int = 1, labelled: float = 0.0) -> Any:
    """``rows`` as ``serving_source.serving_window`` returns them after the API served them."""
    proba = model.predict_proba(rows[list(SCHEMA.features)])
    best = proba.argmax(axis=1)
    window = rows[list(SCHEMA.features)].copy()
    window["prediction"] = [str(c) for c in model.classes_[best].tolist()]
    window["probability"] = proba[np.arange(len(best)), best]
    keep = np.arange(len(rows)) < labelled * len(rows)
    window["label"] = [str(v) if k else None for v, k in zip(rows["y"], keep, strict=True)]
    window["served_at"] = pd.to_datetime(
        [T0 + timedelta(seconds=i) for i in range(len(rows))], utc=True
    )
    window["model_version"] = version
    return window


def _calibrate(model: Any, held: pd.DataFrame) -> Calibrator:
    """CBPE's calibrator on ``held`` rows with the model's outputs there, as
    ``train_and_gate`` logs it and ``registry.load_calibrator`` reads it back (JSON)."""
    features = held[list(SCHEMA.features)]
    right = model.predict(features).astype(str) == held["y"].astype(str).to_numpy()
    data = cycle.fit_calibration(model, features, right)
    assert data is not None
    return calibrator_from_dict(json.loads(json.dumps(data)))


def _world(
    seed: int = 0, n_reference: int = 20_000, estimator: EstimatorName = "logistic_regression"
) -> tuple[Any, pd.DataFrame, Calibrator]:
    """Champion trained on 4,000 rows (its reference window), calibrated on other rows."""
    rng = np.random.default_rng(seed)
    reference = _draw(rng, 4000)
    model = train(reference, SCHEMA, estimator)
    return model, reference, _calibrate(model, _draw(rng, n_reference))


def _training_reference(calibrator: Calibrator) -> Calibrator:
    """The same calibrator as read from a calibration.json written before the held-out
    outputs were stored: the monitor falls back to the champion on its training rows."""
    old = calibrator_to_dict(calibrator)
    del old["reference_outputs"]
    return calibrator_from_dict(old)


@pytest.fixture(scope="module")
def world() -> tuple[Any, pd.DataFrame, Calibrator]:
    return _world()


def monitor_serving(
    window: pd.DataFrame,
    reference: pd.DataFrame,
    model: Any,
    calibrator: Calibrator | None,
    settings: Settings,
    version: int | None = 1,
) -> monitoring.ServingReport:
    return monitoring.monitor_serving(
        window, reference, model, calibrator, SCHEMA, settings, champion_version=version
    )


# --------------------------------------------------------------------------------------
# The calibrator as JSON
# --------------------------------------------------------------------------------------


def test_calibrator_json_round_trip_predicts_identically() -> None:
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 800)
    calibrator = fit_calibrator(confidence, rng.random(800) < confidence**2)
    text = json.dumps(calibrator_to_dict(calibrator))
    back = calibrator_from_dict(json.loads(text))
    probe = np.concatenate([rng.uniform(0.0, 1.0, 5000), [0.0, 0.5, 1.0], confidence])
    assert np.array_equal(back.calibrate(probe), calibrator.calibrate(probe))
    assert back.n_reference == 800
    assert back.reference_accuracy == calibrator.reference_accuracy
    assert estimate_accuracy(back, probe) == estimate_accuracy(calibrator, probe)
    assert json.loads(text)["format"] == CALIBRATOR_FORMAT  # no pickle: plain numbers


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "pickle"}, "format"),
        ({"x_thresholds": [0.6, 0.5]}, "sorted"),
        ({"y_thresholds": [0.5, 1.5]}, r"\[0, 1\]"),
        ({"y_thresholds": [0.5]}, "one length"),
        ({"n_reference": None}, "malformed"),
        ({"reference_accuracy": 2.0}, "reference_accuracy"),
    ],
)
def test_a_malformed_calibration_is_refused_naming_the_field(
    change: dict[str, Any], message: str
) -> None:
    good = {
        "format": CALIBRATOR_FORMAT,
        "x_thresholds": [0.5, 0.9],
        "y_thresholds": [0.5, 0.8],
        "increasing": True,
        "n_reference": 10,
        "reference_accuracy": 0.7,
    }
    assert calibrator_from_dict(good).calibrate([0.7])[0] == pytest.approx(0.65)
    with pytest.raises(ValueError, match=message):
        calibrator_from_dict({**good, **change})
    missing = dict(good)
    del missing["n_reference"]
    with pytest.raises(ValueError, match="missing field 'n_reference'"):
        calibrator_from_dict(missing)


# --------------------------------------------------------------------------------------
# monitor_serving: what it sees
# --------------------------------------------------------------------------------------


def test_same_distribution_windows_raise_no_alarm(
    world: tuple[Any, pd.DataFrame, Calibrator],
) -> None:
    model, reference, calibrator = world
    settings = Settings()
    for seed in range(10, 16):
        window = _served(model, _draw(np.random.default_rng(seed), 500), labelled=0.2)
        report = monitor_serving(window, reference, model, calibrator, settings)
        assert not report.data_drift, (seed, report.drifted_features)
        assert not report.prediction_drift, (seed, report.drifted_features)
        assert not report.warn, seed
        assert report.estimate is not None
        assert report.estimate.contains(calibrator.reference_accuracy) or (
            abs(report.estimate.estimate - calibrator.reference_accuracy) < 0.04
        )
        assert report.labelled_rows == 100
        assert report.label_coverage == pytest.approx(0.2)


def test_a_covariate_shift_of_the_inputs_is_serving_drift(
    world: tuple[Any, pd.DataFrame, Calibrator],
) -> None:
    model, reference, calibrator = world
    rng = np.random.default_rng(2)
    # Along the decision boundary (3 x0 - 2 x1 unchanged): the inputs move, the predicted
    # classes keep their shares.
    window = _served(model, _draw(rng, 500, shift=(0.8, 1.2)))
    report = monitor_serving(window, reference, model, calibrator, Settings())
    assert report.data_drift
    assert {"x0", "x1"} <= set(report.drifted_features)
    assert "day" not in report.drifted_features
    assert "prediction" not in report.drifted_features


def test_a_shift_of_the_predicted_classes_is_prediction_drift(
    world: tuple[Any, pd.DataFrame, Calibrator],
) -> None:
    model, reference, calibrator = world
    rng = np.random.default_rng(3)
    window = _served(model, _draw(rng, 500, shift=(0.6, -0.4)))  # towards class 1
    report = monitor_serving(window, reference, model, calibrator, Settings())
    assert report.prediction_drift
    assert "prediction" in report.drifted_features
    shares = window["prediction"].value_counts(normalize=True)
    assert shares["1"] > 0.7  # the served class mix did move


def test_cbpe_tracks_the_realised_accuracy_under_covariate_shift_and_warns(
    world: tuple[Any, pd.DataFrame, Calibrator],
) -> None:
    """Rows crowd the decision boundary (P(y | x) unchanged): accuracy falls, the estimate
    follows it before any label, and the drop warns."""
    model, reference, calibrator = world
    rows = _draw(np.random.default_rng(4), 4000, spread=0.3)
    window = _served(model, rows)
    realised = float(np.mean(window["prediction"].astype(int).to_numpy() == rows["y"].to_numpy()))
    report = monitor_serving(window, reference, model, calibrator, Settings())
    assert report.estimate is not None
    assert calibrator.reference_accuracy - realised > 0.1  # a real drop
    assert abs(report.estimate.estimate - realised) < 0.04
    assert report.estimate.upper < calibrator.reference_accuracy
    assert report.warn
    assert report.data_drift  # squeezed inputs: the spread changed too


def test_warning_needs_the_drop_and_the_interval_below_the_reference() -> None:
    """``warn`` iff estimate < reference - IAC_ESTIMATION_WARN_DROP and upper < reference."""
    model, reference, _ = _world(seed=5, n_reference=2000)
    # A hand-made calibrator: P(right) = confidence, reference accuracy 0.9.
    calibrator = calibrator_from_dict(
        {
            "format": CALIBRATOR_FORMAT,
            "x_thresholds": [0.5, 1.0],
            "y_thresholds": [0.5, 1.0],
            "increasing": True,
            "n_reference": 1000,
            "reference_accuracy": 0.9,
        }
    )
    rows = _draw(np.random.default_rng(6), 400)

    def report_for(confidence: float, n: int, drop: float) -> monitoring.ServingReport:
        window = _served(model, rows.head(n))
        window["probability"] = confidence
        return monitor_serving(
            window, reference, model, calibrator, Settings(estimation_warn_drop=drop)
        )

    big = report_for(0.7, 400, 0.05)  # 0.70 +/- 0.045: well below 0.9
    assert big.estimate is not None and big.estimate.estimate == pytest.approx(0.7)
    assert big.warn
    assert not report_for(0.7, 400, 0.25).warn  # a drop of 0.2 is within the allowed 0.25
    small = report_for(0.83, 12, 0.05)  # below 0.85 but the interval reaches 0.9
    assert small.estimate is not None and small.estimate.upper >= 0.9
    assert not small.warn
    assert not report_for(0.88, 400, 0.05).warn  # a drop of 0.02 only


def test_only_the_champions_rows_count_for_the_estimate_and_output_drift(
    world: tuple[Any, pd.DataFrame, Calibrator],
) -> None:
    model, reference, calibrator = world
    window = _served(model, _draw(np.random.default_rng(7), 400))
    window.loc[:99, "model_version"] = 0  # served by the previous champion
    window.loc[:99, "probability"] = 0.51  # whose confidences would drag the estimate down
    report = monitor_serving(window, reference, model, calibrator, Settings())
    assert report.n_rows == 400 and report.champion_rows == 300 and report.estimated_rows == 300
    assert report.estimate is not None and report.estimate.n == 300
    assert not report.warn
    assert not report.prediction_drift
    only_old = window.assign(model_version=0)
    report = monitor_serving(only_old, reference, model, calibrator, Settings())
    assert report.estimate is None and report.champion_rows == 0
    assert "no row of the window was served by champion version 1" in report.problems[0]
    assert not report.prediction_drift


def test_without_calibrator_or_probabilities_there_is_no_estimate(
    world: tuple[Any, pd.DataFrame, Calibrator],
) -> None:
    model, reference, _ = world
    window = _served(model, _draw(np.random.default_rng(8), 300))
    report = monitor_serving(window, reference, model, None, Settings())
    assert report.estimate is None and report.reference_accuracy is None and not report.warn
    assert "no CBPE calibrator" in report.problems[0]
    assert report.drift is not None
    names = {f.feature for f in report.drift.features}
    assert names == {"x0", "x1", "day", "prediction", "probability"}
    with pytest.raises(ValueError, match="empty"):
        monitor_serving(window.head(0), reference, model, None, Settings())
    with pytest.raises(ValueError, match="lacks columns"):
        monitor_serving(window.drop(columns="x1"), reference, model, None, Settings())


def test_the_output_reference_is_the_held_out_outputs_stored_with_the_calibrator(
    world: tuple[Any, pd.DataFrame, Calibrator],
) -> None:
    model, reference, calibrator = world
    assert calibrator.reference_outputs is not None
    assert len(calibrator.reference_outputs) == calibrator.n_reference == 20_000
    window = _served(model, _draw(np.random.default_rng(20), 500))
    report = monitor_serving(window, reference, model, calibrator, Settings())
    assert (report.output_reference, report.output_reference_rows) == ("held_out", 20_000)
    assert report.drift is not None and report.drift.n_reference == 4000  # the inputs'
    assert report.problems == []
    stored = report.to_dict()
    assert (stored["output_reference"], stored["output_reference_rows"]) == ("held_out", 20_000)
    # The reference really is the stored outputs: doctored ones make the outputs drift,
    # and the inputs (compared with the training rows) do not.
    outputs = calibrator.reference_outputs
    doctored = replace(
        calibrator,
        reference_outputs=replace(
            outputs,
            prediction=("1",) * len(outputs),
            probability=tuple(min(1.0, p + 0.2) for p in outputs.probability),
        ),
    )
    report = monitor_serving(window, reference, model, doctored, Settings())
    assert report.prediction_drift and not report.data_drift
    assert {"prediction", "probability"} <= set(report.drifted_features)


def test_an_old_calibration_without_outputs_still_loads_and_monitors(
    world: tuple[Any, pd.DataFrame, Calibrator],
) -> None:
    """A calibration.json written before the outputs were stored: same estimate, the
    outputs compared with the champion's on its training rows, and the report says so."""
    model, reference, calibrator = world
    old = _training_reference(calibrator)
    assert old.reference_outputs is None
    for seed in (21, 22, 23):
        window = _served(model, _draw(np.random.default_rng(seed), 500))
        report = monitor_serving(window, reference, model, old, Settings())
        held_out = monitor_serving(window, reference, model, calibrator, Settings())
        assert report.output_reference == "training" and report.output_reference_rows == 4000
        assert report.problems == [monitoring.TRAINING_REFERENCE_CAVEAT]
        assert report.estimate == held_out.estimate  # the estimate does not depend on it
        # For a logistic regression (as confident on training rows as on new ones) the
        # fallback is fair: no false alarm on a stable stream.
        assert not report.prediction_drift and not report.data_drift, report.drifted_features
    # A shift of the class mix is still seen against either reference.
    shifted = _served(model, _draw(np.random.default_rng(24), 500, shift=(0.6, -0.4)))
    assert monitor_serving(shifted, reference, model, old, Settings()).prediction_drift


# --------------------------------------------------------------------------------------
# A model that memorises its training rows (random forest): out-of-sample reference
# --------------------------------------------------------------------------------------

FOREST_SEEDS = (0, 1, 2)
# A bootstrap's held-out quarter of a 200-row batch, and the newest of 336-row batches.
HELD_OUT_SIZES = (50, 336)


@pytest.fixture(scope="module")
def forests() -> dict[tuple[int, int], tuple[Any, pd.DataFrame, Calibrator]]:
    """Random-forest champions (``IAC_ESTIMATOR=random_forest``, the project's pipeline)
    per (seed, held-out rows)."""
    return {
        (seed, n): _world(100 + seed, n, "random_forest")
        for seed in FOREST_SEEDS
        for n in HELD_OUT_SIZES
    }


def test_a_random_forest_on_a_stable_stream_shows_no_prediction_drift(
    forests: dict[tuple[int, int], tuple[Any, pd.DataFrame, Calibrator]],
) -> None:
    """The bug: against the forest's outputs on its own training rows (leaves that
    memorised them: top-class probabilities near 1), every stable window showed a
    probability drift. Against its held-out outputs, none does."""
    settings = Settings()
    # 24 stable windows (fixed seeds). Under no drift each window may alarm with
    # probability up to IAC_DRIFT_ALPHA (0.05), so an unlucky seed could show one alarm;
    # these show none, where the old reference alarmed on all 24.
    for (seed, n), (model, reference, calibrator) in forests.items():
        old = _training_reference(calibrator)
        for w in range(4):
            rows = _draw(np.random.default_rng(1000 * seed + 10 * n + w), 500)
            window = _served(model, rows)
            report = monitor_serving(window, reference, model, calibrator, settings)
            assert report.output_reference == "held_out" and report.output_reference_rows == n
            assert not report.prediction_drift, (seed, n, w, report.drifted_features)
            before = monitor_serving(window, reference, model, old, settings)
            assert before.prediction_drift, (seed, n, w)
            assert "probability" in before.drifted_features, (seed, n, w)
            assert monitoring.TRAINING_REFERENCE_CAVEAT in before.problems


def test_a_random_forest_output_shift_is_still_detected_on_the_held_out_reference(
    forests: dict[tuple[int, int], tuple[Any, pd.DataFrame, Calibrator]],
) -> None:
    """The held-out reference is small, so the output tests lose power (module
    docstring of ``ia_continu.monitoring.serving_monitor``): with 336 rows a class mix moving from about
    50 % to 75 % is found; with 50 rows (found in 2 of 5 seeds when tried) it takes a
    larger move, 50 % to about 87 %, or a confidence drop, to be found every time."""
    settings = Settings()
    for seed in FOREST_SEEDS:
        model, reference, calibrator = forests[(seed, 336)]
        window = _served(model, _draw(np.random.default_rng(77 + seed), 500, shift=(0.6, -0.4)))
        assert window["prediction"].value_counts(normalize=True)["1"] > 0.7
        report = monitor_serving(window, reference, model, calibrator, settings)
        assert report.prediction_drift and "prediction" in report.drifted_features, seed

        model, reference, calibrator = forests[(seed, 50)]
        window = _served(model, _draw(np.random.default_rng(77 + seed), 500, shift=(1.0, -0.7)))
        assert window["prediction"].value_counts(normalize=True)["1"] > 0.8
        report = monitor_serving(window, reference, model, calibrator, settings)
        assert report.prediction_drift and "prediction" in report.drifted_features, seed
        # Rows crowding the decision boundary: same class mix, lower confidences.
        window = _served(model, _draw(np.random.default_rng(88 + seed), 500, spread=0.3))
        report = monitor_serving(window, reference, model, calibrator, settings)
        assert report.prediction_drift and "probability" in report.drifted_features, seed


# --------------------------------------------------------------------------------------
# Storage: realised accuracy once labels land
# --------------------------------------------------------------------------------------


def _add_served(
    engine: Engine,
    rows: list[tuple[str, datetime, str, str | None, int]],
) -> None:
    """``(prediction_id, served_at, prediction, label, model_version)`` rows."""
    with Session(engine) as session:
        for pid, served_at, prediction, label, version in rows:
            session.add(
                ServedPredictionRow(
                    prediction_id=pid,
                    write_id=1,
                    served_at=served_at,
                    request_id=pid,
                    model_name="clf",
                    model_version=version,
                    features={"x0": 0.0},
                    prediction=prediction,
                    probability=0.8,
                    label=label,
                    labelled_at=None if label is None else served_at,
                    label_origin=None if label is None else "labels.csv",
                )
            )
        session.commit()


def _save(engine: Engine, start: datetime, end: datetime, version: int | None = 1) -> str:
    return repository.save_serving_report(
        engine,
        source="serving:clf",
        champion_version=version,
        window_start=start,
        window_end=end,
        n_rows=5,
        labelled_rows=0,
        estimated_accuracy=0.8,
        estimated_lower=0.7,
        estimated_upper=0.9,
        reference_accuracy=0.85,
        data_drift=False,
        prediction_drift=False,
        report={"k": 1},
    )


def test_fill_realised_accuracy_once_the_labels_had_time(settings: Settings) -> None:
    engine = migrate(settings.resolved_database_url)
    s = timedelta(seconds=1)
    _add_served(
        engine,
        [
            ("a", T0, "1", "1", 1),
            ("b", T0 + s, "1", "0", 1),
            ("c", T0 + 2 * s, "0", "0", 1),
            ("d", T0 + 3 * s, "0", None, 1),  # no label (yet)
            ("e", T0 + 3 * s, "1", "0", 2),  # another version: not this report's
            ("f", T0 + 9 * s, "1", "0", 1),  # after the window
        ],
    )
    report_id = _save(engine, T0, T0 + 3 * s)
    empty_id = _save(engine, T0 + 20 * s, T0 + 30 * s)  # no labelled row in it
    delay = timedelta(seconds=60)
    assert repository.fill_realised_accuracy(engine, delay, now=T0 + 62 * s) == 0  # too early
    assert repository.fill_realised_accuracy(engine, delay, now=T0 + 63 * s) == 1
    reports = {r["id"]: r for r in repository.serving_reports(engine, 10)}
    assert reports[report_id]["realised_rows"] == 3
    assert reports[report_id]["realised_accuracy"] == pytest.approx(2 / 3)
    assert reports[empty_id]["realised_rows"] is None
    assert repository.fill_realised_accuracy(engine, delay, now=T0 + 100 * s) == 1
    reports = {r["id"]: r for r in repository.serving_reports(engine, 10)}
    assert reports[empty_id]["realised_rows"] == 0
    assert reports[empty_id]["realised_accuracy"] is None
    # Idempotent: filled once; a label landing later changes nothing.
    _add_served(engine, [("g", T0 + s / 2, "1", "1", 1)])
    assert repository.fill_realised_accuracy(engine, delay, now=T0 + 200 * s) == 0
    again = {r["id"]: r for r in repository.serving_reports(engine, 10)}
    assert again == reports
    newest = repository.serving_reports(engine, 1, realised_only=True)
    assert [r["id"] for r in newest] == [report_id]
    assert repository.serving_reports(engine, 10, source="other") == []


def test_a_report_without_champion_version_counts_every_version(settings: Settings) -> None:
    engine = migrate(settings.resolved_database_url)
    _add_served(engine, [("a", T0, "1", "1", 1), ("b", T0, "1", "0", 2)])
    report_id = _save(engine, T0, T0, version=None)
    assert repository.fill_realised_accuracy(engine, timedelta(0), now=T0) == 1
    (report,) = repository.serving_reports(engine, 1)
    assert (report["id"], report["realised_rows"], report["realised_accuracy"]) == (
        report_id,
        2,
        0.5,
    )


# --------------------------------------------------------------------------------------
# The cycle: calibration.json, then the serving monitor against the real champion
# --------------------------------------------------------------------------------------


@pytest.fixture
def serving_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"data_source": "serving", "serving_seed_source": "synthetic"}
    )


def _bootstrap(settings: Settings) -> tuple[GateResult, RetrainOutcome]:
    """Seed batch -> train_and_gate -> record_challenger: champion version 1."""
    batch = cycle.ingest(settings, "seed")
    assert batch.batch_id is not None, batch
    window = cycle.load_training_window(settings)
    challenger, decision = cycle.train_and_gate(window, settings)
    outcome = cycle.record_challenger(
        settings, window, challenger, decision, trigger="bootstrap", drift_report_id=None
    )
    assert outcome.promoted, outcome
    return decision, outcome


def test_train_and_gate_logs_the_calibrator_and_the_champion_loads_it(
    serving_settings: Settings,
) -> None:
    decision, outcome = _bootstrap(serving_settings)
    client = registry.client(serving_settings.mlflow_tracking_uri)
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"calibration.json", "lineage.json"} <= artifacts
    logged = mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/calibration.json")
    assert logged == decision.calibration
    assert logged["n_reference"] == decision.holdout_rows == 50
    assert len(logged["reference_outputs"]["prediction"]) == 50
    assert logged["reference_accuracy"] == pytest.approx(decision.challenger_accuracy)
    champion = registry.get_alias(client, serving_settings.registered_model_name)
    assert champion is not None
    loaded = registry.load_calibrator(client, champion)
    assert loaded is not None
    probe = np.linspace(0.0, 1.0, 101)
    assert np.array_equal(loaded.calibrate(probe), calibrator_from_dict(logged).calibrate(probe))
    # By URI too; a version without the artifact (older runs) has none, and no failure.
    assert registry.load_calibrator(serving_settings.mlflow_tracking_uri, champion) is not None
    with mlflow.start_run() as run:
        mlflow.log_dict({"old": True}, "lineage.json")
    older = registry.ModelRef("clf", 9, run.info.run_id, None)
    assert registry.load_calibrator(client, older) is None
    with mlflow.start_run() as run:
        mlflow.log_dict({"format": "pickle"}, "calibration.json")
    broken = registry.ModelRef("clf", 10, run.info.run_id, None)
    assert registry.load_calibrator(client, broken) is None


def test_no_calibrator_for_a_model_without_probabilities() -> None:
    class Votes:
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            return np.zeros(len(x))

    assert cycle.fit_calibration(Votes(), pd.DataFrame({"a": [1.0]}), np.array([True])) is None
    model, _, _ = _world(seed=9, n_reference=100)
    rows = _draw(np.random.default_rng(9), 50)
    features = rows[list(SCHEMA.features)]
    assert cycle.fit_calibration(model, features, np.ones(50, dtype=bool)) is None  # all right
    fitted = cycle.fit_calibration(model, features, np.arange(50) % 3 > 0)
    assert fitted is not None and fitted["n_reference"] == 50
    # The model's own outputs on those rows, as the API would serve them.
    assert fitted["reference_outputs"] == {
        "prediction": [str(v) for v in model.predict(features).tolist()],
        "probability": model.predict_proba(features).max(axis=1).tolist(),
    }


def test_run_serving_monitor_stores_a_report_and_later_its_realised_accuracy(
    serving_settings: Settings,
) -> None:
    settings = serving_settings
    engine = migrate(settings.resolved_database_url)
    nothing = monitoring.run_serving_monitor(settings)
    assert (nothing.status, nothing.stored) == ("no_champion", False)
    _bootstrap(settings)
    empty = monitoring.run_serving_monitor(settings)
    assert (empty.status, empty.stored, empty.champion_version) == ("no_window", False, 1)
    assert repository.serving_reports(engine, 10) == []

    now = datetime.now(UTC)
    serve_champion(settings, 150, now - timedelta(seconds=5))
    summary = monitoring.run_serving_monitor(settings)
    assert summary.status == "reported" and summary.stored
    assert ServingSummary.model_validate_json(summary.model_dump_json()) == summary  # JSON-ready
    assert summary.n_rows == 150 and summary.label_coverage == 1.0
    assert summary.source == f"serving:{settings.registered_model_name}"
    assert 0.6 < summary.estimated_accuracy < 1.0
    assert summary.estimated_lower < summary.estimated_accuracy < summary.estimated_upper
    assert not summary.data_drift and not summary.prediction_drift
    assert summary.realised_accuracy is None  # labels have not had IAC_LABEL_DELAY yet
    (stored,) = repository.serving_reports(engine, 10)
    assert stored["id"] == summary.report_id
    assert stored["estimated_accuracy"] == summary.estimated_accuracy
    assert stored["report"]["estimate"]["n"] == 150

    later = monitoring.run_serving_monitor(settings, now=now + settings.label_delay)
    assert later.realised_filled == 1
    assert later.realised_report_id == summary.report_id
    assert later.realised_rows == 150
    assert later.realised_estimate == summary.estimated_accuracy
    # The estimate was about those very predictions: CBPE is close to what happened.
    assert abs(later.realised_accuracy - summary.estimated_accuracy) < 0.1

    # A covariate shift: announced when it appears, not again while it lasts.
    serve_champion(settings, 150, now, position=4, shift={"feature1": 2.0})
    shifted = monitoring.run_serving_monitor(settings)
    assert shifted.data_drift and "feature1" in shifted.drifted_features
    assert shifted.serving_drift_new
    lasting = monitoring.run_serving_monitor(settings)
    assert lasting.data_drift and not lasting.serving_drift_new


def test_a_random_forest_from_the_cycle_monitors_on_its_held_out_outputs(
    serving_settings: Settings,
) -> None:
    """IAC_ESTIMATOR=random_forest through the real cycle (ingest, train_and_gate, the
    calibration.json it would log, served_predictions, serving_window): stable served
    windows raise no prediction drift, where the old reference (the forest on its
    training rows) alarmed on each.

    Not through the registry: ``registry.log_challenger`` cannot log a random forest
    with this MLflow (skops refuses ``sklearn.tree._tree.Tree`` as untrusted)."""
    settings = serving_settings.model_copy(
        update={"estimator": "random_forest", "synthetic_mode": "stable"}
    )
    engine = migrate(settings.resolved_database_url)
    assert cycle.ingest(settings, "seed").batch_id is not None
    window = cycle.load_training_window(settings)
    model, decision = cycle.train_and_gate(window, settings)
    # The served model is refitted on the whole seed batch (IAC_REFIT_ON_HOLDOUT, the
    # default); its reference outputs are the gated model's on the held-out quarter.
    assert decision.promote and decision.refit, decision.reason
    logged = json.loads(json.dumps(decision.calibration))  # as calibration.json holds it
    assert len(logged["reference_outputs"]["probability"]) == decision.holdout_rows == 50
    calibrator = calibrator_from_dict(logged)
    reference = repository.load_frame(engine, decision.training_batch_ids)
    schema = serving_source.stream(settings).schema
    now = datetime.now(UTC)
    for k, position in enumerate((1, 2, 3, 4, 5)):
        at = now - timedelta(seconds=50 - 10 * k)
        serve_model(settings, model, position, at, version=1, labelled=False)
        served = serving_source.serving_window(settings, engine)  # this position's rows
        report = monitoring.monitor_serving(
            served, reference, model, calibrator, schema, settings, champion_version=1
        )
        assert report.n_rows == 200 and report.window_start is not None
        assert abs(report.window_start - at) < timedelta(milliseconds=1)
        assert report.output_reference == "held_out" and report.output_reference_rows == 50
        assert not report.prediction_drift, (position, report.drifted_features)
        before = monitoring.monitor_serving(
            served,
            reference,
            model,
            _training_reference(calibrator),
            schema,
            settings,
            champion_version=1,
        )
        assert before.prediction_drift, position


def test_a_refitted_champion_keeps_the_gated_models_held_out_outputs(settings: Settings) -> None:
    """IAC_REFIT_ON_HOLDOUT: the promoted model is trained on the held-out batch too, so
    it has no unseen labelled row; it keeps the gated model's calibrator and outputs."""
    settings = settings.model_copy(
        update={"estimator": "random_forest", "synthetic_mode": "stable", "refit_on_holdout": True}
    )
    for key in ("a", "b"):
        assert cycle.ingest(settings, key).batch_id is not None
    window = cycle.load_training_window(settings)
    model, decision = cycle.train_and_gate(window, settings)
    assert decision.promote and decision.refit, decision.reason
    holdout = window.holdout
    features = holdout[list(window.schema.features)]
    gated = train(
        window.frame[window.frame["batch_id"].isin(decision.window.batch_ids)],
        window.schema,
        "random_forest",
    )
    stored = calibrator_from_dict(decision.calibration).reference_outputs
    assert stored is not None and len(stored) == len(holdout)
    assert list(stored.probability) == gated.predict_proba(features).max(axis=1).tolist()
    # The refit saw these rows: its outputs there are in-sample, more confident.
    refit_top = model.predict_proba(features).max(axis=1)
    assert refit_top.mean() > np.mean(stored.probability)


def test_an_old_calibration_json_read_from_the_registry_still_monitors(
    serving_settings: Settings,
) -> None:
    """A version logged before the outputs were stored (no ``reference_outputs`` key)."""
    settings = serving_settings
    decision, _ = _bootstrap(settings)
    old = {k: v for k, v in decision.calibration.items() if k != "reference_outputs"}
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_dict(old, "calibration.json")
    client = registry.client(settings.mlflow_tracking_uri)
    champion = registry.get_alias(client, settings.registered_model_name)
    assert champion is not None
    calibrator = registry.load_calibrator(client, replace(champion, run_id=run.info.run_id))
    assert calibrator is not None and calibrator.reference_outputs is None
    assert calibrator.n_reference == 50
    engine = migrate(settings.resolved_database_url)
    serve_champion(settings, 150, datetime.now(UTC) - timedelta(seconds=5))
    model, _ = cycle.load_champion_model(settings, champion)
    report = monitoring.monitor_serving(
        serving_source.serving_window(settings, engine),
        repository.load_frame(engine, champion.training_batch_ids),
        model,
        calibrator,
        serving_source.stream(settings).schema,
        settings,
        champion_version=champion.version,
    )
    assert report.output_reference == "training" and report.estimate is not None
    assert monitoring.TRAINING_REFERENCE_CAVEAT in report.problems
    assert not report.prediction_drift  # the default logistic regression: a fair fallback


# --------------------------------------------------------------------------------------
# Notifications and pushed metrics
# --------------------------------------------------------------------------------------

SERVING = ServingSummary(
    source="serving:model",
    status="reported",
    champion_version=2,
    n_rows=300,
    label_coverage=0.25,
    data_drift=True,
    prediction_drift=False,
    drifted_features=["x0"],
    serving_drift_new=True,
    estimated_accuracy=0.71,
    estimated_lower=0.66,
    estimated_upper=0.76,
    reference_accuracy=0.86,
    realised_accuracy=0.8,
    warn=True,
    warn_new=True,
)


def test_serving_events_warn_and_announce_new_serving_drift_once() -> None:
    warning, drift = serving_events(SERVING)
    assert warning.status == "warning"
    assert warning.title == "Estimated accuracy dropped (no labels yet)"
    assert warning.fields["estimated"] == "71.0 %"
    assert warning.fields["interval"] == "66.0 % to 76.0 %"
    assert warning.fields["reference"] == "86.0 %"
    assert warning.fields["coverage"] == "25.0 %"
    assert drift.status == "drift" and drift.title == "Serving drift detected (inputs)"
    lasting = SERVING.model_copy(update={"warn_new": False, "serving_drift_new": False})
    assert serving_events(lasting) == []
    assert (
        len(
            serving_events(
                SERVING.model_copy(update={"warn_new": True, "serving_drift_new": False})
            )
        )
        == 1
    )
    assert serving_events(SERVING.model_copy(update={"status": "no_window"})) == []
    assert serving_events(None) == []
    assert [e.status for e in events(None, None, None, SERVING)] == ["warning", "drift"]


def test_serving_metrics() -> None:
    registry_ = CollectorRegistry()
    flow_metrics.serving_metrics(SERVING, registry_)
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(generate_latest(registry_).decode())
        for s in family.samples
    }
    assert samples == {
        "iac_estimated_accuracy": 0.71,
        "iac_estimated_accuracy_lower": 0.66,
        "iac_estimated_accuracy_upper": 0.76,
        "iac_realised_accuracy": 0.8,
        "iac_label_coverage": 0.25,
        "iac_serving_drift": 1.0,
        "iac_prediction_drift": 0.0,
    }
    nothing = CollectorRegistry()
    flow_metrics.serving_metrics(
        ServingSummary(source="serving:model", status="no_champion"), nothing
    )
    assert generate_latest(nothing) == b""
