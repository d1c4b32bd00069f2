"""Streams as they come: ``ia-continu check`` reads the header and first batch and names
the setting at fault; any tabular stream (no time column; integer, string, 3- and 40-class
targets) goes through the source, training and serving by settings alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from ia_continu import cli
from ia_continu.data import stream_check
from ia_continu.data.sources import ReplaySource, build_source
from ia_continu.serving.champion import ServedModel, load_served_model
from ia_continu.serving.onnx_runtime import compile_onnx
from ia_continu.serving.signature import SignatureValidator
from ia_continu.settings import Settings, get_settings
from ia_continu.training import registry
from ia_continu.training import trainer as training

BATCH = 200

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _stream(kind: str, n: int = 4 * BATCH, seed: int = 0) -> pd.DataFrame:
    """A learnable stream, no time column: Gaussian classes around separated centres.

    ``kind``: ``int2`` (labels 0/1), ``str2`` (yes/no, with a categorical feature),
    ``str3`` (three string classes), ``int40`` (labels 0..39, like ``outdoor.csv``).
    """
    rng = np.random.default_rng(seed)
    n_classes = {"int2": 2, "str2": 2, "str3": 3, "int40": 40}[kind]
    dims = 6
    centres = rng.normal(scale=4.0, size=(n_classes, dims))
    y = rng.integers(0, n_classes, n)
    x = centres[y] + rng.normal(size=(n, dims))
    frame = pd.DataFrame({f"x{i}": x[:, i].round(5) for i in range(dims)})
    if kind == "str2":
        frame["site"] = rng.choice(["north", "south", "east"], n)
        frame["label"] = np.where(y == 1, "yes", "no")
    elif kind == "str3":
        frame["label"] = np.array(["low", "mid", "high"])[y]
    else:
        frame["label"] = y
    return frame


def _env(monkeypatch: pytest.MonkeyPatch, path: Path, **extra: str) -> None:
    """A replay of ``path`` with no time column and no categorical column, set by env."""
    env = {
        "IAC_DATA_SOURCE": "replay",
        "IAC_REPLAY_PATH": str(path),
        "IAC_REPLAY_TARGET": "label",
        "IAC_REPLAY_TIME_COLUMN": "",
        "IAC_REPLAY_CATEGORICAL_COLUMNS": "",
        "IAC_BATCH_SIZE": str(BATCH),
    }
    env.update(extra)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def _check(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``ia-continu check`` in process: (exit status, stdout, stderr)."""
    try:
        code = cli.main(["check"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write(tmp_path: Path, text: str, name: str = "stream.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _numbers(n: int, label: str = "label") -> str:
    """Header ``x,y,label`` and ``n`` clean rows with two classes."""
    rows = [f"{i},{i * 0.5},{'a' if i % 2 else 'b'}" for i in range(n)]
    return "\n".join([f"x,y,{label}", *rows]) + "\n"


# --------------------------------------------------------------------------------------
# ia-continu check: each mistake exits 2 with one line naming its setting
# --------------------------------------------------------------------------------------


def _fails_naming(capsys: pytest.CaptureFixture[str], setting: str, *fragments: str) -> str:
    code, out, err = _check(capsys)
    assert code == 2, (out, err)
    assert out == ""  # nothing printed as if the settings were fine
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{setting}:"), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_missing_target_column(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, _write(tmp_path, _numbers(50)), IAC_REPLAY_TARGET="klass")
    _fails_naming(capsys, "IAC_REPLAY_TARGET", "column 'klass' is not in ['x', 'y', 'label']")


def test_elec2_defaults_on_another_file_name_the_time_column(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The usual first mistake: the defaults describe Elec2 (time column ``date``)."""
    monkeypatch.setenv("IAC_REPLAY_PATH", str(_write(tmp_path, _numbers(50))))
    monkeypatch.setenv("IAC_REPLAY_TARGET", "label")
    _fails_naming(
        capsys, "IAC_REPLAY_TIME_COLUMN", "'date' is not in", "IAC_REPLAY_TIME_COLUMN= (empty)"
    )


def test_missing_categorical_column(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, _write(tmp_path, _numbers(50)), IAC_REPLAY_CATEGORICAL_COLUMNS="y,colour")
    _fails_naming(capsys, "IAC_REPLAY_CATEGORICAL_COLUMNS", "'colour' is not in")


def test_non_numeric_cell_in_a_numeric_feature_names_its_row_and_column(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _numbers(50).splitlines()
    text[8] = "7,oops,a"  # line 9 of the file = data row 8
    text[12] = "11,missing,a"
    _env(monkeypatch, _write(tmp_path, "\n".join(text) + "\n"))
    line = _fails_naming(
        capsys, "IAC_REPLAY_CATEGORICAL_COLUMNS", "column 'y'", "data row 8", "'oops'"
    )
    assert "1 more" in line


def test_non_numeric_row_is_the_file_row_when_sorted_by_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{49 - i},{i},{'a' if i % 2 else 'b'}" for i in range(50)]  # t decreasing
    rows[45] = "4,oops,a"  # data row 46, but the 5th row in time order
    _env(
        monkeypatch,
        _write(tmp_path, "\n".join(["t,x,label", *rows]) + "\n"),
        IAC_REPLAY_TIME_COLUMN="t",
    )
    _fails_naming(capsys, "IAC_REPLAY_CATEGORICAL_COLUMNS", "data row 46", "column 'x'")


def test_a_long_text_cell_is_not_quoted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "postgresql://admin:hunter2@db.internal/prod"
    text = _numbers(50).splitlines()
    text[3] = f"2,{secret},b"
    _env(monkeypatch, _write(tmp_path, "\n".join(text) + "\n"))
    line = _fails_naming(capsys, "IAC_REPLAY_CATEGORICAL_COLUMNS", "data row 3")
    assert "hunter2" not in line and f"a text of {len(secret)} characters" in line


def test_single_class_first_batch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{i},{i},{'a' if i >= BATCH else 'b'}" for i in range(2 * BATCH)]
    _env(monkeypatch, _write(tmp_path, "\n".join(["x,y,label", *rows]) + "\n"))
    _fails_naming(
        capsys, "IAC_REPLAY_TARGET / IAC_BATCH_SIZE", "single class ('b')", "200 labelled rows"
    )


def test_empty_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, _write(tmp_path, ""))
    _fails_naming(capsys, "IAC_REPLAY_PATH", "is empty")


def test_header_without_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, _write(tmp_path, "x,y,label\n"))
    _fails_naming(capsys, "IAC_REPLAY_PATH", "no data row")


def test_missing_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, tmp_path / "nowhere.csv")
    _fails_naming(capsys, "IAC_REPLAY_PATH", "no such file")


def test_undeclared_text_column(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{i},{'red' if i % 3 else 'blue'},{'a' if i % 2 else 'b'}" for i in range(50)]
    _env(monkeypatch, _write(tmp_path, "\n".join(["x,colour,label", *rows]) + "\n"))
    _fails_naming(capsys, "IAC_REPLAY_CATEGORICAL_COLUMNS", "'colour' holds no number")


def test_label_outside_the_known_classes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _numbers(50).splitlines()
    text[5] = "4,2.0,c"
    _env(monkeypatch, _write(tmp_path, "\n".join(text) + "\n"), IAC_REPLAY_CLASSES="a,b")
    _fails_naming(capsys, "IAC_REPLAY_CLASSES", "data row 5", "'c'", "['a', 'b']")


def test_too_few_labelled_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{i},{i},{('a' if i % 2 else 'b') if i < 10 else ''}" for i in range(50)]
    _env(monkeypatch, _write(tmp_path, "\n".join(["x,y,label", *rows]) + "\n"))
    _fails_naming(capsys, "IAC_MIN_BATCH_ROWS", "10 labelled rows of 50", "=30")


@pytest.mark.parametrize(("cell", "rule"), [("inf", "infinite"), ("", "empty")])
def test_infinite_or_empty_numeric_cell(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cell: str,
    rule: str,
) -> None:
    text = _numbers(50).splitlines()
    text[20] = f"19,{cell},a"
    _env(monkeypatch, _write(tmp_path, "\n".join(text) + "\n"))
    _fails_naming(capsys, "IAC_REPLAY_PATH", f"column 'y' is {rule} at data row 20")


def test_time_column_that_is_not_a_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        f"{'morning' if i == 3 else f'2020-01-{i + 1:02d}'},{i},{'ab'[i % 2]}" for i in range(28)
    ]
    _env(
        monkeypatch,
        _write(tmp_path, "\n".join(["day,x,label", *rows]) + "\n"),
        IAC_REPLAY_TIME_COLUMN="day",
    )
    _fails_naming(capsys, "IAC_REPLAY_TIME_COLUMN", "data row 4")


def test_an_identifier_as_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{i * 0.1},{i},id-{i}" for i in range(50)]
    _env(monkeypatch, _write(tmp_path, "\n".join(["x,y,label", *rows]) + "\n"))
    _fails_naming(capsys, "IAC_REPLAY_TARGET", "different value on each of the 50")


def test_invalid_settings_still_fail_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, tmp_path / "nowhere.csv", IAC_BATCH_SIZE="five")
    code, _, err = _check(capsys)
    assert code == 2 and "IAC_BATCH_SIZE" in err and "IAC_REPLAY_PATH" not in err


# --------------------------------------------------------------------------------------
# ia-continu check: a good stream prints the settings and one summary line
# --------------------------------------------------------------------------------------


def test_check_passes_on_a_stream_without_time_column(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "yesno.csv"
    _stream("str2", n=3 * BATCH + 17).to_csv(path, index=False)
    _env(monkeypatch, path, IAC_REPLAY_CATEGORICAL_COLUMNS="site")
    code, out, err = _check(capsys)
    assert (code, err) == (0, "")
    assert "IAC_REPLAY_TIME_COLUMN=None" in out and "IAC_BATCH_SIZE=200" in out
    assert out.splitlines()[-1] == (
        "stream replay:yesno.csv:n=200: 617 rows, 4 batches (file order); 7 features "
        "(6 numeric, 1 categorical); target 'label': 2 classes in the first batch "
        "(200 rows): no, yes"
    )


def test_check_summary_of_the_default_and_synthetic_streams(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _check(capsys)
    assert code == 0
    assert out.splitlines()[-1] == (
        "stream replay:electricity.csv:n=336: 45312 rows, 135 batches (sorted by 'date'); "
        "7 features (6 numeric, 1 categorical); target 'class': 2 classes in the first "
        "batch (336 rows): DOWN, UP"
    )
    monkeypatch.setenv("IAC_DATA_SOURCE", "synthetic")
    monkeypatch.setenv("IAC_BATCH_SIZE", "50")
    get_settings.cache_clear()
    code, out, _ = _check(capsys)
    assert code == 0
    assert out.splitlines()[-1] == (
        "stream synthetic:concept_drift:seed=42:n=50: unbounded (generated); 2 features "
        "(2 numeric, 0 categorical); target 'target': 2 classes in the first batch "
        "(50 rows): 0, 1"
    )


def test_check_counts_forty_classes_without_listing_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "objects.csv"
    _stream("int40").to_csv(path, index=False)
    _env(monkeypatch, path)
    summary = stream_check.check_stream(Settings())
    assert len(summary.classes) == 40 and summary.classes[:3] == ("0", "1", "10")
    assert summary.line().endswith("40 classes in the first batch (200 rows)")
    assert (summary.rows, summary.batches, summary.order) == (800, 4, "file order")


# --------------------------------------------------------------------------------------
# Any target through source, training and serving
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "labels"),
    [
        ("int2", {"0", "1"}),
        ("str2", {"no", "yes"}),
        ("str3", {"low", "mid", "high"}),
        ("int40", {str(c) for c in range(40)}),
    ],
)
@pytest.mark.parametrize("estimator", ["logistic_regression", "random_forest"])
def test_any_target_is_trained_and_served_with_the_probability_of_its_class(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str, labels: set[str], estimator: str
) -> None:
    frame = _stream(kind)
    path = tmp_path / f"{kind}.csv"
    frame.to_csv(path, index=False)
    _env(monkeypatch, path, IAC_REPLAY_CATEGORICAL_COLUMNS="site" if kind == "str2" else "")
    source = build_source(Settings())
    assert isinstance(source, ReplaySource) and source.time_column is None
    # File order is time order: the batches are the file's rows, in order.
    replayed = pd.concat([source.batch(p) for p in range(source.n_batches)], ignore_index=True)
    np.testing.assert_array_equal(replayed["x0"].to_numpy(), frame["x0"].to_numpy())
    assert list(replayed["label"]) == [str(v) for v in frame["label"]]

    window = pd.concat([source.batch(p) for p in range(3)], ignore_index=True)
    newest = source.batch(3)
    model = training.train(window, source.schema, estimator)  # type: ignore[arg-type]
    assert set(model.classes_) == labels
    score = training.accuracy(model, newest, source.schema)
    assert score > training.majority_accuracy(newest, source.schema) + 0.2

    features = newest[list(source.schema.features)]
    validator = SignatureValidator(infer_signature(features), max_batch_rows=1_000)
    arrays = validator.arrays(features.to_dict(orient="records"))  # type: ignore[arg-type]
    onnx = compile_onnx(model, validator.columns, arrays)
    assert (onnx is not None) == (estimator == "logistic_regression")
    expected_labels = list(model.predict(features))
    expected_proba = model.predict_proba(features).max(axis=1)
    for runtime in {None, onnx}:
        served = ServedModel(
            name="m",
            version=1,
            alias="champion",
            model=model,
            validator=validator,
            run_id=None,
            trained_at=None,
            metrics={},
            signature={},
            onnx=runtime,
        )
        predicted, probability = served.predict(arrays)
        assert predicted == expected_labels
        assert all(isinstance(label, str) and label in labels for label in predicted)
        assert probability is not None
        np.testing.assert_allclose(probability, expected_proba, rtol=0, atol=1e-9)
        assert min(probability) >= 1 / len(labels) - 1e-12 and max(probability) <= 1


def test_multiclass_champions_round_trip_the_registry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the API loads (MLflow artifact, signature, ONNX check) serves any labels."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry.client(uri)
    for kind in ("str3", "int40"):
        path = tmp_path / f"{kind}.csv"
        _stream(kind).to_csv(path, index=False)
        _env(monkeypatch, path)
        source = build_source(Settings())
        window = pd.concat([source.batch(p) for p in range(3)], ignore_index=True)
        model = training.train(window, source.schema)
        features = list(source.schema.features)
        _, model_uri = registry.log_challenger(
            client,
            experiment="streams",
            model=model,
            input_example=window[features].head(5),
            params={},
            metrics={},
            tags={},
            lineage={},
        )
        version = registry.register(client, name=kind, model_uri=model_uri, tags={})
        served = load_served_model(uri, kind, version, "champion", max_batch_rows=1_000)
        assert served.runtime == "onnxruntime", kind
        rows = source.batch(3)[features]
        arrays = served.validator.arrays(rows.to_dict(orient="records"))  # type: ignore[arg-type]
        predicted, probability = served.predict(arrays)
        assert predicted == list(model.predict(rows)), kind
        assert probability is not None
        np.testing.assert_allclose(
            probability, model.predict_proba(rows).max(axis=1), rtol=0, atol=1e-9
        )
