"""Data sources (synthetic generator, CSV replay, packaged Elec2) and source-related settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ia_continu.data.sources import (
    ReplaySource,
    SourceConfigError,
    StreamExhausted,
    SyntheticSource,
    build_source,
)
from ia_continu.settings import PACKAGED_ELEC2, Settings

# --------------------------------------------------------------------------------------
# SyntheticSource
# --------------------------------------------------------------------------------------


def _even_rule_accuracy(frame: pd.DataFrame) -> float:
    """Accuracy of the even-period rule ``feature1 + feature2 > 0`` on ``frame``."""
    predicted = (frame["feature1"] + frame["feature2"] > 0).astype(np.int64)
    return float((predicted == frame["target"]).mean())


def test_synthetic_same_seed_and_position_is_identical() -> None:
    first = SyntheticSource(seed=7, batch_size=50).batch(3)
    again = SyntheticSource(seed=7, batch_size=50).batch(3)
    pd.testing.assert_frame_equal(first, again)


def test_synthetic_different_position_or_seed_differs() -> None:
    source = SyntheticSource(seed=7, batch_size=50)
    base = source.batch(3)
    assert not np.allclose(base["feature1"], source.batch(4)["feature1"])
    assert not np.allclose(
        base["feature1"], SyntheticSource(seed=8, batch_size=50).batch(3)["feature1"]
    )


def test_synthetic_shape_columns_and_dtypes() -> None:
    source = SyntheticSource(batch_size=123)
    frame = source.batch(0)
    assert frame.shape == (123, 3)
    assert list(frame.columns) == ["feature1", "feature2", "target"]
    assert source.schema.features == ("feature1", "feature2")
    assert source.schema.numeric == ("feature1", "feature2")
    assert source.schema.categorical == ()
    assert source.schema.target == "target"
    assert set(frame["target"].unique()) <= {0, 1}
    assert frame["feature1"].dtype == np.float64


def test_synthetic_negative_position_raises() -> None:
    with pytest.raises(ValueError, match="position"):
        SyntheticSource().batch(-1)


def test_synthetic_name_identifies_the_stream() -> None:
    assert SyntheticSource(mode="stable", seed=3, batch_size=10).name == (
        "synthetic:stable:seed=3:n=10"
    )


def test_covariate_shift_moves_feature1_only_in_odd_periods() -> None:
    source = SyntheticSource(mode="covariate_shift", batch_size=5_000, period_batches=2)
    for position in range(8):
        frame = source.batch(position)
        odd_period = (position // 2) % 2 == 1
        assert source.is_drifted_period(position) is odd_period
        expected = -0.5 if odd_period else 0.0
        assert frame["feature1"].mean() == pytest.approx(expected, abs=0.1), position
        assert frame["feature2"].mean() == pytest.approx(0.0, abs=0.1), position
        # Same labelling rule in every period: only the inputs move.
        assert _even_rule_accuracy(frame) > 0.9, position


def test_concept_drift_flips_the_rule_in_odd_periods() -> None:
    source = SyntheticSource(
        mode="concept_drift", batch_size=4_000, period_batches=3, label_noise=0.05
    )
    for position in range(12):
        frame = source.batch(position)
        accuracy = _even_rule_accuracy(frame)
        if (position // 3) % 2 == 1:
            assert source.is_drifted_period(position)
            assert accuracy == pytest.approx(0.5, abs=0.05), position
        else:
            assert not source.is_drifted_period(position)
            assert accuracy > 0.9, position
        # Inputs never move under concept drift.
        assert frame["feature1"].mean() == pytest.approx(0.0, abs=0.1), position


def test_label_noise_flips_about_that_share_of_labels() -> None:
    frame = SyntheticSource(mode="stable", batch_size=20_000, label_noise=0.2).batch(0)
    assert _even_rule_accuracy(frame) == pytest.approx(0.8, abs=0.02)


def test_stable_mode_never_drifts() -> None:
    source = SyntheticSource(mode="stable", batch_size=4_000, period_batches=1)
    for position in range(6):
        frame = source.batch(position)
        assert not source.is_drifted_period(position)
        assert _even_rule_accuracy(frame) > 0.9
        assert frame["feature1"].mean() == pytest.approx(0.0, abs=0.1)


# --------------------------------------------------------------------------------------
# ReplaySource on a small CSV
# --------------------------------------------------------------------------------------


def _write_csv(tmp_path: Path) -> Path:
    """Seven rows, out of time order, with two rows sharing ``t == 2``."""
    frame = pd.DataFrame(
        {
            "t": [5, 2, 0, 6, 2, 1, 3],
            "colour": [1, 2, 1, 3, 2, 2, 1],  # read back as integers by pandas
            "x": [50.0, 20.0, 0.0, 60.0, 21.0, 10.0, 30.0],
            "label": [1, 0, 0, 1, 1, 0, 1],
        }
    )
    path = tmp_path / "stream.csv"
    frame.to_csv(path, index=False)
    return path


def _replay(path: Path, **kwargs: object) -> ReplaySource:
    options: dict[str, object] = {
        "target": "label",
        "batch_size": 3,
        "time_column": "t",
        "categorical": ("colour",),
    }
    options.update(kwargs)
    return ReplaySource(path=path, **options)  # type: ignore[arg-type]


def test_replay_schema_excludes_time_and_target(tmp_path: Path) -> None:
    source = _replay(_write_csv(tmp_path))
    assert source.schema.features == ("colour", "x")
    assert source.schema.categorical == ("colour",)
    assert source.schema.numeric == ("x",)
    assert source.schema.target == "label"
    assert source.name == "replay:stream.csv:n=3"
    assert source.n_batches == 3


def test_replay_sorts_by_time_stably_and_slices_batches(tmp_path: Path) -> None:
    source = _replay(_write_csv(tmp_path))
    batches = [source.batch(p) for p in range(3)]
    assert [len(b) for b in batches] == [3, 3, 1]  # short last batch
    # Time order 0, 1, 2 (file order: x=20 before x=21), 2, 3, 5, 6.
    assert list(pd.concat(batches)["x"]) == [0.0, 10.0, 20.0, 21.0, 30.0, 50.0, 60.0]
    for frame in batches:
        assert list(frame.columns) == ["colour", "x", "label"]
        assert list(frame.index) == list(range(len(frame)))


def test_replay_casts_categorical_and_target_to_str(tmp_path: Path) -> None:
    frame = _replay(_write_csv(tmp_path)).batch(0)
    assert list(frame["colour"]) == ["1", "2", "2"]
    assert list(frame["label"]) == ["0", "0", "0"]
    assert all(isinstance(v, str) for v in frame["colour"])
    assert all(isinstance(v, str) for v in frame["label"])
    assert frame["x"].dtype == np.float64


def test_replay_without_time_column_keeps_file_order(tmp_path: Path) -> None:
    source = _replay(_write_csv(tmp_path), time_column=None, categorical=())
    assert source.schema.features == ("t", "colour", "x")
    assert list(source.batch(0)["x"]) == [50.0, 20.0, 0.0]


def test_replay_exhausted_without_loop(tmp_path: Path) -> None:
    source = _replay(_write_csv(tmp_path), loop=False)
    source.batch(2)
    with pytest.raises(StreamExhausted, match="IAC_REPLAY_LOOP"):
        source.batch(3)
    with pytest.raises(ValueError, match="position"):
        source.batch(-1)


def test_replay_wraps_around_with_loop(tmp_path: Path) -> None:
    source = _replay(_write_csv(tmp_path), loop=True)
    for position in range(3):
        pd.testing.assert_frame_equal(source.batch(position + 3), source.batch(position))
        pd.testing.assert_frame_equal(source.batch(position + 6), source.batch(position))


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"target": "nope"}, "IAC_REPLAY_TARGET"),
        ({"time_column": "when"}, "IAC_REPLAY_TIME_COLUMN"),
        ({"categorical": ("colour", "shape")}, "IAC_REPLAY_CATEGORICAL_COLUMNS"),
    ],
)
def test_replay_bad_column_names_the_setting(
    tmp_path: Path, kwargs: dict[str, object], setting: str
) -> None:
    path = _write_csv(tmp_path)
    with pytest.raises(SourceConfigError, match=setting):
        _replay(path, **kwargs)


def test_replay_missing_file_names_the_path_setting(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match="IAC_REPLAY_PATH"):
        _replay(tmp_path / "missing.csv")


def test_replay_without_feature_names_the_path_setting(tmp_path: Path) -> None:
    path = tmp_path / "only_target.csv"
    pd.DataFrame({"t": [0, 1], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(SourceConfigError, match="IAC_REPLAY_PATH"):
        _replay(path, categorical=())


def test_replay_keeps_missing_categorical_and_target_missing(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("t,colour,x,label\n0,red,1.0,UP\n1,,2.0,DOWN\n2,blue,3.0,\n")
    frame = _replay(path, batch_size=5).batch(0)
    assert pd.isna(frame["colour"].iloc[1])
    assert pd.isna(frame["label"].iloc[2])


def test_replay_of_an_empty_csv_is_a_config_error_or_exhausted(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("t,colour,x,label\n")
    with pytest.raises((SourceConfigError, StreamExhausted)):
        _replay(path).batch(0)


def test_a_stray_text_cell_only_affects_its_own_batch(tmp_path: Path) -> None:
    """pandas reads a whole column as text for one bad cell; the source parses it back."""
    path = tmp_path / "stray.csv"
    path.write_text("t,x,label\n0,1.5,UP\n1,2.5,DOWN\n2,oops,UP\n3,4,DOWN\n4,inf,UP\n5,,UP\n")
    source = _replay(path, batch_size=2, categorical=())
    first, second, third = (source.batch(p) for p in range(3))
    assert first["x"].dtype == np.float64 and list(first["x"]) == [1.5, 2.5]
    assert second["x"].dtype == object and list(second["x"]) == ["oops", 4.0]
    assert third["x"].dtype == np.float64
    assert third["x"].iloc[0] == np.inf and np.isnan(third["x"].iloc[1])


def test_a_numeric_feature_without_any_number_names_the_categorical_setting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "undeclared.csv"
    path.write_text("t,colour,label\n0,red,UP\n1,blue,DOWN\n")
    with pytest.raises(SourceConfigError, match="IAC_REPLAY_CATEGORICAL_COLUMNS.*colour"):
        _replay(path, categorical=())


def test_known_classes_reach_the_schema(tmp_path: Path) -> None:
    assert _replay(_write_csv(tmp_path)).schema.classes == ()
    assert _replay(_write_csv(tmp_path), classes=("0", "1")).schema.classes == ("0", "1")
    assert SyntheticSource().schema.classes == (0, 1)
    settings = Settings(
        replay_path=_write_csv(tmp_path),
        replay_target="label",
        replay_time_column="t",
        replay_categorical_columns=["colour"],
        replay_classes="0, 1",  # type: ignore[arg-type]
    )
    assert build_source(settings).schema.classes == ("0", "1")


def test_source_config_error_is_a_value_error() -> None:
    assert issubclass(SourceConfigError, ValueError)


# --------------------------------------------------------------------------------------
# Packaged Elec2 and build_source
# --------------------------------------------------------------------------------------


def test_default_settings_replay_packaged_elec2() -> None:
    settings = Settings()
    assert settings.replay_path == PACKAGED_ELEC2
    source = build_source(settings)
    assert isinstance(source, ReplaySource)
    assert source.schema.features == (
        "day",
        "period",
        "nswprice",
        "nswdemand",
        "vicprice",
        "vicdemand",
        "transfer",
    )
    assert "date" not in source.schema.features
    assert source.schema.categorical == ("day",)
    assert source.schema.target == "class"
    assert source.loop
    first = source.batch(0)
    assert first.shape == (336, 8)
    assert set(first["day"]) <= {str(d) for d in range(1, 8)}
    labels: set[str] = set()
    for position in range(0, source.n_batches, 10):
        labels |= set(source.batch(position)["class"])
    assert labels == {"UP", "DOWN"}
    # 45,312 rows: 134 full batches and a short one of 288 rows, then it loops.
    assert source.n_batches == 135
    assert len(source.batch(134)) == 45_312 - 134 * 336
    pd.testing.assert_frame_equal(source.batch(135), first)


def test_build_source_picks_synthetic_from_settings() -> None:
    settings = Settings(
        data_source="synthetic",
        synthetic_mode="covariate_shift",
        synthetic_seed=5,
        batch_size=64,
        synthetic_period_batches=3,
        synthetic_label_noise=0.1,
    )
    source = build_source(settings)
    assert isinstance(source, SyntheticSource)
    assert (source.mode, source.seed, source.batch_size) == ("covariate_shift", 5, 64)
    assert (source.period_batches, source.label_noise) == (3, 0.1)
    assert len(source.batch(0)) == 64


def test_build_source_picks_replay_from_settings(tmp_path: Path) -> None:
    path = _write_csv(tmp_path)
    settings = Settings(
        replay_path=path,
        replay_target="label",
        replay_time_column="t",
        replay_categorical_columns=["colour"],
        replay_loop=False,
        batch_size=10,
        min_batch_rows=5,
    )
    source = build_source(settings)
    assert isinstance(source, ReplaySource)
    assert source.schema.features == ("colour", "x")
    assert source.loop is False
    assert len(source.batch(0)) == 7
    with pytest.raises(StreamExhausted):
        source.batch(1)


def test_build_source_replay_bad_target_raises(tmp_path: Path) -> None:
    settings = Settings(
        replay_path=_write_csv(tmp_path), replay_target="class", batch_size=10, min_batch_rows=5
    )
    with pytest.raises(SourceConfigError, match="IAC_REPLAY_TARGET"):
        build_source(settings)


# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------


def test_categorical_columns_env_parses_to_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IAC_REPLAY_CATEGORICAL_COLUMNS", "a,b")
    assert Settings().replay_categorical_columns == ["a", "b"]
    monkeypatch.setenv("IAC_REPLAY_CATEGORICAL_COLUMNS", " a , b ,")
    assert Settings().replay_categorical_columns == ["a", "b"]
    monkeypatch.setenv("IAC_REPLAY_CATEGORICAL_COLUMNS", "")
    assert Settings().replay_categorical_columns == []


@pytest.mark.parametrize("value", ["5", "not-a-number", "2000000"])
def test_invalid_batch_size_env_raises(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("IAC_BATCH_SIZE", value)
    with pytest.raises(ValidationError, match="batch_size"):
        Settings()


def test_valid_batch_size_env_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IAC_BATCH_SIZE", "64")
    assert Settings().batch_size == 64


def test_min_batch_rows_above_the_batch_size_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().min_batch_rows == 30
    monkeypatch.setenv("IAC_BATCH_SIZE", "20")
    assert Settings().min_batch_rows == 20  # unset: the default follows a small batch size
    monkeypatch.setenv("IAC_MIN_BATCH_ROWS", "21")
    with pytest.raises(ValidationError, match="IAC_MIN_BATCH_ROWS.*IAC_BATCH_SIZE"):
        Settings()
    monkeypatch.setenv("IAC_MIN_BATCH_ROWS", "20")
    assert Settings().min_batch_rows == 20
    monkeypatch.setenv("IAC_MIN_BATCH_ROWS", "0")
    with pytest.raises(ValidationError, match="min_batch_rows"):
        Settings()


def test_time_column_equal_to_target_is_rejected() -> None:
    with pytest.raises(ValidationError, match="IAC_REPLAY_TIME_COLUMN"):
        Settings(replay_time_column="class", replay_target="class")


# --------------------------------------------------------------------------------------
# Streams as they come: no time column, labels as written, dates, mistakes named
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_time_column_env_means_file_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    path = _write_csv(tmp_path)
    for key, setting in {
        "IAC_REPLAY_PATH": str(path),
        "IAC_REPLAY_TARGET": "label",
        "IAC_REPLAY_TIME_COLUMN": value,
        "IAC_REPLAY_CATEGORICAL_COLUMNS": "",
        "IAC_BATCH_SIZE": "10",
        "IAC_MIN_BATCH_ROWS": "1",
    }.items():
        monkeypatch.setenv(key, setting)
    settings = Settings()
    assert settings.replay_time_column is None
    source = build_source(settings)
    assert isinstance(source, ReplaySource) and source.time_column is None
    # "t" is an ordinary feature now, and the rows come in file order.
    assert source.schema.features == ("t", "colour", "x")
    assert list(source.batch(0)["t"]) == [5, 2, 0, 6, 2, 1, 3]


def test_unset_time_column_env_keeps_the_elec2_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().replay_time_column == "date"
    monkeypatch.setenv("IAC_REPLAY_TIME_COLUMN", "when")
    assert Settings().replay_time_column == "when"


def test_positive_label_is_gone_and_an_old_variable_is_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "replay_positive_label" not in Settings.model_fields
    monkeypatch.setenv("IAC_REPLAY_POSITIVE_LABEL", "UP")
    assert not hasattr(Settings(), "replay_positive_label")


def test_labels_and_categories_are_read_as_written_even_beside_gaps(tmp_path: Path) -> None:
    """pandas reads an integer column with a gap as floats (``1.0``); labels must stay ``1``."""
    path = tmp_path / "gaps.csv"
    path.write_text("colour,x,label\n1,0.5,1\n,1.5,0\n2,2.5,\n3,3.5,1\n")
    source = _replay(path, time_column=None, batch_size=10, classes=("0", "1"))
    frame = source.batch(0)
    assert list(frame["label"])[:2] == ["1", "0"] and pd.isna(frame["label"].iloc[2])
    assert frame["colour"].iloc[0] == "1" and pd.isna(frame["colour"].iloc[1])


def test_time_column_of_dates_is_sorted_as_dates_not_text(tmp_path: Path) -> None:
    path = tmp_path / "dates.csv"
    path.write_text("when,x,label\n10/1/2020,3,a\n9/1/2020,2,b\n1/15/2021,4,a\n8/30/2020,1,b\n")
    source = _replay(path, time_column="when", categorical=(), batch_size=10)
    assert list(source.batch(0)["x"]) == [1.0, 2.0, 3.0, 4.0]
    # Data rows are counted in the file, not in time order (header not counted).
    assert [source.data_row(0, r) for r in range(4)] == [4, 2, 1, 3]


def test_time_column_neither_numbers_nor_dates_names_the_setting_and_row(tmp_path: Path) -> None:
    path = tmp_path / "when.csv"
    path.write_text("when,x,label\n2020-01-01,1,a\nsoon,2,b\n")
    with pytest.raises(SourceConfigError, match=r"IAC_REPLAY_TIME_COLUMN: .*data row 2.*empty"):
        _replay(path, time_column="when", categorical=())


def test_data_row_and_n_rows(tmp_path: Path) -> None:
    source = _replay(_write_csv(tmp_path))  # sorted by t: file rows 3, 6, 2 | 5, 7, 1 | 4
    assert source.n_rows == 7
    assert [source.data_row(0, r) for r in range(3)] == [3, 6, 2]
    assert source.data_row(2, 0) == 4
    assert source.data_row(3, 0) == 3  # a looped position maps to the same file row
    with pytest.raises(IndexError):
        source.data_row(2, 1)  # the last batch has one row


def test_categorical_column_that_is_the_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match="IAC_REPLAY_CATEGORICAL_COLUMNS: 'label'"):
        _replay(_write_csv(tmp_path), categorical=("colour", "label"))


def test_zero_byte_file_names_the_path_setting(tmp_path: Path) -> None:
    path = tmp_path / "zero.csv"
    path.write_bytes(b"")
    with pytest.raises(SourceConfigError, match=r"IAC_REPLAY_PATH: .*empty"):
        _replay(path)


def test_binary_file_names_the_path_setting(tmp_path: Path) -> None:
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01" * 8)
    with pytest.raises(SourceConfigError, match="IAC_REPLAY_PATH"):
        _replay(path)


def test_missing_column_message_helps(tmp_path: Path) -> None:
    path = _write_csv(tmp_path)
    with pytest.raises(SourceConfigError, match=r"did you mean 'label'\?"):
        _replay(path, target="Label")
    with pytest.raises(SourceConfigError, match=r"IAC_REPLAY_TIME_COLUMN= \(empty\)"):
        _replay(path, time_column="date")
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("x;label\n1;a\n")
    with pytest.raises(SourceConfigError, match="not look comma-separated"):
        _replay(semicolons, time_column=None, categorical=())
    wide = tmp_path / "wide.csv"
    pd.DataFrame({f"f{i}": [1.0] for i in range(30)} | {"label": ["a"]}).to_csv(wide, index=False)
    with pytest.raises(SourceConfigError, match=r"'f19', \.\.\. \(31 columns\)\]") as info:
        _replay(wide, target="y", time_column=None, categorical=())
    assert "f20" not in str(info.value)
