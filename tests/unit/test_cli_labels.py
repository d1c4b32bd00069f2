"""``ia-continu labels``: counts on success, one line naming the file and row or column on
a bad file (exit 2), never a stack trace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ia_continu import cli
from ia_continu.data.storage import served
from ia_continu.data.storage.migrate import migrate
from ia_continu.settings import get_settings
from tests.utils.serving import log_write, record, served_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Engine:
    """IAC_DATA_DIR on tmp_path; served predictions p1 (class 1) and p2 (class 0)."""
    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    engine = migrate(get_settings().resolved_database_url)
    log_write(engine, record("r1", [1, 0], ids=["p1", "p2"]))
    return engine


def test_load_joins_and_prints_counts(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "truth.csv"
    path.write_text("prediction_id,label\np1,1\np2,1\nghost,0\np1,0\n")
    assert cli.main(["labels", "load", str(path)]) == 0
    out = capsys.readouterr().out
    assert "truth.csv: 4 rows: 2 joined, 0 duplicates (no change), 1 conflicts, 1 unknown" in out
    assert "2 rows kept aside in quarantined_labels (origin 'cli:truth.csv')" in out
    assert served_rows(engine)["p1"].label_origin == "cli:truth.csv row 1"
    assert path.exists()  # the CLI never moves the file
    # Loading it again changes nothing and keeps nothing aside twice.
    assert cli.main(["labels", "load", str(path)]) == 0
    assert "0 joined, 2 duplicates" in capsys.readouterr().out
    assert len(served.quarantined_labels(engine)) == 2


def test_load_reports_earlier_unknown_ids_resolved(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "early.csv"
    path.write_text("prediction_id,label\nlater,1\n")
    assert cli.main(["labels", "load", str(path)]) == 0
    assert "1 unknown ids" in capsys.readouterr().out
    log_write(engine, record("r2", [0], ids=["later"], created=2e9))
    other = tmp_path / "other.csv"
    other.write_text("prediction_id,label\np2,0\n")
    assert cli.main(["labels", "load", str(other)]) == 0
    assert "1 earlier unknown ids resolved" in capsys.readouterr().out
    assert served_rows(engine)["later"].label == "1"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "id,label\np1,1\n",
            "labels not loaded: bad.csv: no column 'prediction_id' (IAC_LABELS_ID_COLUMN)",
        ),
        ("prediction_id,label\np1,1\np2,0,1\n", "labels not loaded: bad.csv: not a readable CSV"),
    ],
)
def test_a_bad_file_exits_2_with_one_line(
    engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    expected: str,
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert cli.main(["labels", "load", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1
    assert "Traceback" not in err
    assert served.label_counts(engine).labelled == 0


def test_a_missing_file_exits_2(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["labels", "load", "nowhere.parquet"]) == 2
    assert "nowhere.parquet: cannot be read" in capsys.readouterr().err


def test_status_counts_labelled_and_kept_aside(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("prediction_id,label\np1,1\n,1\nghost,0\n")
    cli.main(["labels", "load", str(path)])
    capsys.readouterr()
    assert cli.main(["labels", "status"]) == 0
    out = capsys.readouterr().out
    assert "served predictions: 2, labelled 1 (50.0%), unlabelled 1" in out
    assert "unknown_id 1, conflict 0, invalid 1" in out
    assert "[invalid] cli:t.csv: row 2: missing prediction id" in out


def test_the_installed_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("order,label\n1,1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAC_")}
    env["IAC_DATA_DIR"] = str(tmp_path / "state")
    done = subprocess.run(
        [sys.executable, "-m", "ia_continu.cli", "labels", "load", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "x.csv: no column 'prediction_id'" in done.stderr
    assert "Traceback" not in done.stderr
