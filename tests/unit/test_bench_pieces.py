"""Pieces of the stream benchmark: suite loading, baselines, drift response, alarms, plot."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.baselines import arf, last_batch, majority_previous, river_rows
from bench.stream_report import (
    PolicyTrace,
    alarm_rates,
    drift_response,
    markdown_rows,
    plot_stream,
)
from bench.stream_suite import (
    QUICK,
    QUICK_MAX_BATCHES,
    RECIPES,
    SUITE,
    Recipe,
    Stream,
    StreamSpec,
    drift_cost,
    load_quick,
    load_stream,
    resolve,
    settings_for,
    write_generated,
)
from ia_continu.data.sources import ReplaySource, Schema, build_source
from ia_continu.settings import Settings

# --------------------------------------------------------------------------------------
# Tiny hand-made streams
# --------------------------------------------------------------------------------------

SCHEMA = Schema(features=("x",), categorical=(), target="y")


def _stream(batches: list[pd.DataFrame], schema: Schema = SCHEMA) -> Stream:
    spec = StreamSpec("tiny", Path("tiny.csv"), "y", None, (), 4, (), "stable", "", "")
    return Stream("tiny", schema, [b.assign(batch_id=i) for i, b in enumerate(batches)], spec)


def _batch(x: list[float], y: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"x": x, "y": y})


def test_majority_previous_predicts_the_previous_batch_majority() -> None:
    stream = _stream(
        [
            _batch([0, 0, 0, 0], ["a", "a", "a", "b"]),  # majority a
            _batch([0, 0, 0, 0], ["a", "b", "b", "b"]),  # tested with a: 1/4; majority b
            _batch([0, 0, 0, 0], ["b", "b", "a", "a"]),  # tested with b: 2/4; tie -> a
            _batch([0, 0, 0, 0], ["a", "a", "a", "b"]),  # tested with a: 3/4
        ]
    )
    trace = majority_previous(stream)
    assert trace.batch_ids == [1, 2, 3]
    assert trace.correct == [1, 2, 3]
    assert trace.n == [4, 4, 4]
    assert trace.accuracy == pytest.approx(6 / 12)
    assert [p.tolist() for p in trace.y_pred] == [["a"] * 4, ["b"] * 4, ["a"] * 4]
    assert trace.retrains == 0 and trace.promotions == 0
    assert trace.concept_drift == [None] * 3


def test_last_batch_uses_the_previous_batch_model_and_keeps_it_on_one_class() -> None:
    up = _batch([-2, -1, 1, 2], ["lo", "lo", "hi", "hi"])  # x > 0 -> hi
    down = _batch([-2, -1, 1, 2], ["hi", "hi", "lo", "lo"])  # x > 0 -> lo
    one_class = _batch([-2, -1, 1, 2], ["hi", "hi", "hi", "hi"])
    stream = _stream([up, up, down, one_class, down])
    trace = last_batch(stream, Settings())
    # batch 1: model of batch 0 (up) on up: 4/4; batch 2: model of 1 (up) on down: 0/4;
    # batch 3: model of 2 (down) on all-hi: 2/4; batch 4: one-class batch 3 cannot
    # train, so the model of batch 2 (down) is kept: 4/4.
    assert trace.correct == [4, 0, 2, 4]
    assert trace.retrain == [True, True, False, True]
    assert trace.promoted == trace.retrain
    assert trace.retrains == 3


def test_river_rows_drop_missing_and_stringify_categoricals() -> None:
    schema = Schema(features=("x", "c"), categorical=("c",), target="y")
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0], "c": ["2", "3", None], "y": ["a", "b", None]})
    assert list(river_rows(frame, schema)) == [({"x": 1.0, "c": "2"}, "a"), ({"c": "3"}, "b")]


def test_arf_tests_each_batch_before_learning_it() -> None:
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(4):
        x = rng.standard_normal(60)
        batches.append(_batch(list(x), ["hi" if v > 0 else "lo" for v in x]))
    trace = arf(_stream(batches), seed=0)
    assert trace.batch_ids == [1, 2, 3] and trace.n == [60, 60, 60]
    assert trace.accuracy > 0.8
    assert trace.seconds is not None


# --------------------------------------------------------------------------------------
# Traces: metrics, drift response, alarm rates
# --------------------------------------------------------------------------------------


def _trace(
    accuracies: list[float],
    flags: Sequence[int] = (),
    promotions: Sequence[int] = (),
    data_flags: Sequence[int] = (),
    tested: bool = True,
) -> PolicyTrace:
    """Batches 1..len(accuracies) of 100 rows with the given accuracies."""
    trace = PolicyTrace("ours")
    for t, acc in enumerate(accuracies, start=1):
        k = round(acc * 100)
        truth = np.array(["a"] * 100)
        predicted = np.array(["a"] * k + ["b"] * (100 - k))
        trace.add(
            t,
            truth,
            predicted,
            retrain=t in promotions,
            promoted=t in promotions,
            concept_drift=(t in flags) if tested else None,
            data_drift=(t in data_flags) if tested else None,
        )
    return trace


def test_trace_metrics_are_row_weighted_and_json_ready() -> None:
    trace = PolicyTrace("p")
    trace.add(1, ["a", "a", "b", "b"], ["a", "a", "a", "a"])
    trace.add(2, ["a", "b"], ["b", "b"])
    assert trace.accuracy == pytest.approx(3 / 6)
    assert trace.batch_accuracy == [0.5, 0.5]
    # recall a = 2/3, recall b = 1/3
    assert trace.balanced_accuracy == pytest.approx(0.5)
    # F1 a: precision 2/4, recall 2/3 -> 4/7; F1 b: precision 1/2, recall 1/3 -> 2/5
    assert trace.macro_f1 == pytest.approx((4 / 7 + 2 / 5) / 2)
    d = trace.to_dict()
    assert d["prequential_accuracy"] == 0.5 and d["test_rows"] == 6
    assert not any(isinstance(v, np.ndarray) for v in d.values())
    with pytest.raises(ValueError):
        trace.add(2, ["a"], ["a"])
    with pytest.raises(ValueError):
        trace.add(3, ["a"], ["a", "b"])


def test_balanced_accuracy_ignores_predicted_only_classes_without_warning() -> None:
    trace = PolicyTrace("p")
    trace.add(1, ["a", "a"], ["a", "z"])
    assert trace.balanced_accuracy == pytest.approx(0.5)


def test_drift_response_flag_exactly_two_batches_after_is_in_time() -> None:
    acc = [0.9] * 9 + [0.5, 0.5, 0.5, 0.89, 0.89, 0.89, 0.89, 0.89] + [0.9] * 3
    # drift at 10; flagged at 12 (delay 2); promoted at 12: recovery = batches 13..17.
    [r] = drift_response(_trace(acc, flags=[12], promotions=[12]), [10])
    assert r["flag_delay"] == 2 and r["flagged_in_time"] is True
    assert r["promotion_delay"] == 2
    assert r["pre_accuracy"] == pytest.approx(0.9)
    assert r["post_accuracy"] == pytest.approx((0.5 * 3 + 0.89 * 2) / 5)
    assert r["recovery_accuracy"] == pytest.approx(0.89)
    assert r["recovered"] is True


def test_drift_response_three_batches_late_and_recovery_just_outside() -> None:
    acc = [0.9] * 9 + [0.5] * 4 + [0.87] * 7
    [r] = drift_response(_trace(acc, flags=[13], promotions=[13]), [10])
    assert r["flag_delay"] == 3 and r["flagged_in_time"] is False
    assert r["recovery_accuracy"] == pytest.approx(0.87)
    assert r["recovered"] is False  # 3 points below, tolerance 2


def test_drift_response_recovery_exactly_at_tolerance_counts() -> None:
    acc = [0.9] * 9 + [0.5] + [0.88] * 10
    [r] = drift_response(_trace(acc, flags=[10], promotions=[10]), [10])
    assert r["flag_delay"] == 0 and r["recovered"] is True


def test_drift_response_never_flagged_and_flags_before_the_drift_ignored() -> None:
    acc = [0.9] * 20
    [r] = drift_response(_trace(acc, flags=[5], promotions=[5]), [10])
    assert r["flag_batch"] is None and r["flag_delay"] is None
    assert r["flagged_in_time"] is False
    assert r["promotion_delay"] is None and r["recovery_accuracy"] is None
    assert r["recovered"] is False


def test_drift_response_a_flag_after_the_next_drift_belongs_to_it() -> None:
    acc = [0.9] * 30
    first, second = drift_response(_trace(acc, flags=[21], promotions=[21]), [10, 20])
    assert first["flag_batch"] is None and first["promotion_batch"] is None
    assert second["flag_delay"] == 1
    # recovery is cut at the end of the stream (batches 22..26 exist; window full)
    assert second["recovery_accuracy"] == pytest.approx(0.9)


def test_drift_response_windows_are_cut_at_the_next_drift() -> None:
    acc = [0.9] * 9 + [0.6, 0.6, 0.6] + [0.3] * 8
    first, _ = drift_response(_trace(acc, flags=[10], promotions=[10]), [10, 13])
    assert first["post_accuracy"] == pytest.approx(0.6)
    assert first["recovery_accuracy"] == pytest.approx(0.6)  # batches 11, 12 only


def test_alarm_rates_per_100_cycles_and_none_when_never_tested() -> None:
    trace = _trace([0.9] * 200, flags=[3], data_flags=[4, 50, 60])
    rates = alarm_rates(trace)
    assert rates["concept_drift_cycles"] == 200
    assert rates["concept_drift_per_100"] == pytest.approx(0.5)
    assert rates["data_drift_per_100"] == pytest.approx(1.5)
    untested = alarm_rates(_trace([0.9] * 10, tested=False))
    assert untested["concept_drift_per_100"] is None and untested["data_drift_cycles"] == 0


def test_markdown_rows_add_macro_f1_for_multiclass_only() -> None:
    binary = _trace([0.5, 1.0])
    header, rows = markdown_rows([binary])
    assert "macro-F1 (%)" not in header
    assert rows == [["ours", "75.00", "75.00", "0", "0"]]
    multi = PolicyTrace("m")
    multi.add(1, ["a", "b", "c"], ["a", "b", "b"])
    header, rows = markdown_rows([multi])
    assert header[3] == "macro-F1 (%)" and len(rows[0]) == len(header)


def test_plot_stream_writes_a_png(tmp_path: Path) -> None:
    ours = _trace([0.9] * 5 + [0.5, 0.9, 0.9], flags=[6], promotions=[6])
    other = _trace([0.8] * 8)
    other.policy = "never"
    path = plot_stream("tiny", [ours, other], [6], path=tmp_path / "p.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1000, 450)


# --------------------------------------------------------------------------------------
# The suite: settings round trip, generated streams
# --------------------------------------------------------------------------------------


def test_settings_for_round_trips_through_build_source(tmp_path: Path) -> None:
    spec = resolve(SUITE["elec2"])
    settings = settings_for(spec, estimator="random_forest")
    assert settings.data_source == "replay" and settings.replay_loop is False
    assert settings.estimator == "random_forest"
    source = build_source(settings)
    assert isinstance(source, ReplaySource)
    assert source.schema.target == "class" and source.schema.categorical == ("day",)
    assert source.time_column == "date" and source.batch_size == 336
    assert "date" not in source.schema.features

    csv = tmp_path / "s.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": ["u", "v", "u"], "t": [0, 1, 0]}).to_csv(
        csv, index=False
    )
    spec = StreamSpec("s", csv, "t", None, ("c",), 10, (), "stable", "", "")
    source = build_source(settings_for(spec))
    assert isinstance(source, ReplaySource)
    assert source.time_column is None and source.schema.features == ("a", "c")


def test_missing_real_stream_names_the_file_and_the_flag(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"weather\.csv.*--datasets-dir"):
        load_stream(SUITE["weather"], datasets_dir=tmp_path)


def test_generated_stream_is_byte_identical_twice(tmp_path: Path) -> None:
    recipe = RECIPES["stagger_recurring"]
    first = write_generated(recipe, tmp_path / "a" / "s.csv").read_bytes()
    second = write_generated(recipe, tmp_path / "b" / "s.csv").read_bytes()
    assert first == second
    other = Recipe(**{**recipe.__dict__, "seed": recipe.seed + 1})
    assert write_generated(other, tmp_path / "c" / "s.csv").read_bytes() != first
    assert other.fingerprint != recipe.fingerprint


def test_quick_stream_drifts_where_the_spec_says(tmp_path: Path) -> None:
    stream = load_quick(generated_dir=tmp_path)
    assert stream.spec.name == QUICK and len(stream.batches) == QUICK_MAX_BATCHES
    assert stream.batches[0]["batch_id"].eq(0).all()
    assert stream.batches[-1]["batch_id"].eq(QUICK_MAX_BATCHES - 1).all()
    assert stream.spec.drift_batches == (20,)
    assert stream.schema.categorical == ()
    [drift] = stream.spec.drift_batches
    cost = drift_cost(stream, drift)
    assert cost["drop"] >= 0.05
    # The same measure inside a concept (a fake drift point 10 batches earlier) is noise.
    assert abs(drift_cost(stream, drift - 10)["drop"]) < 0.05
    # A cached file is reused, not redrawn.
    path = stream.spec.path
    mtime = path.stat().st_mtime_ns
    load_quick(generated_dir=tmp_path)
    assert path.stat().st_mtime_ns == mtime


def test_a_new_recipe_replaces_the_cached_file_of_the_old_one(tmp_path: Path) -> None:
    spec = SUITE["stagger_recurring"]
    stale = tmp_path / "stagger_recurring-00000000.csv"
    stale.write_text("old recipe\n")
    kept = tmp_path / "sea_abrupt-00000000.csv"
    kept.write_text("another stream\n")
    resolved = resolve(spec, generated_dir=tmp_path)
    assert resolved.path.is_file() and resolved.path.name == spec.path.name
    assert not stale.exists() and kept.exists()


def test_every_spec_of_the_suite_is_consistent() -> None:
    for name, spec in SUITE.items():
        assert spec.name == name
        if spec.kind in ("abrupt", "recurring"):
            assert spec.generated and spec.drift_batches
            assert spec.drift_batches == RECIPES[name].drift_batches
        else:
            assert spec.drift_batches == ()
        if spec.generated:
            assert spec.batch_size == RECIPES[name].batch_size
    assert RECIPES["stable_noise"].n_batches >= 150
