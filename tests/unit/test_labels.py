"""Label files and the SQL label source, on real files and real SQLite databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from ia_continu.data import labels
from ia_continu.data.storage import served
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import LabelFileRow, QuarantinedLabelRow
from ia_continu.settings import Settings
from tests.utils.serving import drop_label_file, log_write, record, served_rows, settled


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "state", labels_settle_seconds=2.0)


@pytest.fixture
def engine(settings: Settings) -> Engine:
    """The project database, with served predictions p1..p4 (classes 1, 0, 1, 0)."""
    engine = migrate(settings.resolved_database_url)
    log_write(engine, record("r1", [1, 0, 1, 0], ids=["p1", "p2", "p3", "p4"]))
    return engine


def file_records(engine: Engine) -> list[LabelFileRow]:
    with engine.connect() as connection:
        return list(connection.execute(select(LabelFileRow.__table__).order_by(LabelFileRow.id)))


def ingest(settings: Settings, engine: Engine) -> labels.InboxResult:
    return labels.ingest_inbox(settings, engine, engine)


# --- reading files -------------------------------------------------------------------


def test_csv_is_read_as_text_with_data_rows(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "a.csv"
    path.write_text("\ufeffprediction_id,label,comment\n007,1,x\np2,,y\n")
    frame = labels.read_label_file(path, settings)
    assert list(frame.columns) == ["prediction_id", "label", "row"]
    assert frame["prediction_id"].tolist() == ["007", "p2"]  # leading zeros kept, BOM gone
    assert frame["label"].tolist() == ["1", ""]
    assert frame["row"].tolist() == [1, 2]


def test_columns_come_from_the_settings(tmp_path: Path) -> None:
    custom = Settings(labels_id_column="order", labels_label_column="churned")
    path = tmp_path / "a.csv"
    path.write_text("order,churned\no-1,yes\n")
    assert labels.read_label_file(path, custom)["label"].tolist() == ["yes"]


def test_a_missing_column_names_the_file_column_and_setting(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "export.csv"
    path.write_text("id,label\np1,1\n")
    with pytest.raises(labels.LabelFileError) as error:
        labels.read_label_file(path, settings)
    message = str(error.value)
    assert message.startswith("export.csv: no column 'prediction_id' (IAC_LABELS_ID_COLUMN)")
    assert "'id'" in message


def test_a_malformed_csv_names_the_data_row(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("prediction_id,label\np1,1\np2,0,extra\n")
    with pytest.raises(labels.LabelFileError, match=r"bad.csv: .*\(data row 2\)"):
        labels.read_label_file(path, settings)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "empty.csv: empty file"),
        ("latin.csv", "prediction_id,label\np1,caf\xe9\n".encode("latin-1"), "not UTF-8"),
        ("notes.txt", b"hello", "notes.txt: not a label file type"),
        ("cut.parquet", b"PAR1\x00\x01", "cut.parquet: not a readable Parquet file"),
    ],
)
def test_unreadable_files_are_clear_errors(
    tmp_path: Path, settings: Settings, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(labels.LabelFileError, match=expected):
        labels.read_label_file(path, settings)


def test_a_missing_file_is_a_clear_error(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(labels.LabelFileError, match="no.csv: cannot be read"):
        labels.read_label_file(tmp_path / "no.csv", settings)


def test_parquet_keeps_integer_labels_integer(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "a.parquet"
    pd.DataFrame(
        {"prediction_id": ["p1", "p2"], "label": pd.array([1, None], dtype="Int64")}
    ).to_parquet(path)
    frame = labels.read_label_file(path, settings)
    assert str(frame["label"][0]) == "1" and pd.isna(frame["label"][1])


# --- the inbox -----------------------------------------------------------------------


def test_a_file_is_processed_once_recorded_and_moved(settings: Settings, engine: Engine) -> None:
    drop_label_file(settings, "day1.csv", "prediction_id,label\np1,1\np2,1\nzz,0\n,1\n")
    result = ingest(settings, engine)
    assert result.index.predictions == 4
    (outcome,) = result.processed
    assert outcome.result == served.JoinResult(rows=4, joined=2, unknown=1, invalid=1)
    inbox = settings.resolved_labels_dir
    assert not (inbox / "day1.csv").exists() and (inbox / "processed" / "day1.csv").exists()
    (recorded,) = file_records(engine)
    assert (recorded.name, recorded.status, recorded.n_rows, recorded.joined) == (
        "day1.csv",
        "processed",
        4,
        2,
    )
    assert (recorded.unknown, recorded.invalid, recorded.error) == (1, 1, None)
    rows = served_rows(engine)
    assert rows["p1"].label == "1" and rows["p1"].label_origin == "day1.csv row 1"
    summary = result.to_dict()
    assert summary["files_processed"] == 1 and summary["joined"] == 2
    assert summary["files"][0]["file"] == "day1.csv"
    # The next run finds nothing new.
    assert ingest(settings, engine).to_dict()["files_processed"] == 0


def test_the_same_file_under_another_name_changes_nothing(
    settings: Settings, engine: Engine
) -> None:
    content = "prediction_id,label\np1,1\np2,1\n"
    drop_label_file(settings, "a.csv", content)
    ingest(settings, engine)
    drop_label_file(settings, "a-copy.csv", content)
    drop_label_file(settings, "a.csv", content)  # and again under its first name
    result = ingest(settings, engine)
    assert result.files == () and result.already_seen == ("a-copy.csv", "a.csv")
    assert result.to_dict()["files_already_seen"] == 2
    assert len(file_records(engine)) == 1
    processed = settings.resolved_labels_dir / "processed"
    # Nothing overwritten: the second a.csv is kept under another name.
    names = {p.name for p in processed.iterdir()}
    assert len(names) == 3 and {"a-copy.csv", "a.csv"} <= names


def test_wrong_columns_reject_the_file_naming_the_column(
    settings: Settings, engine: Engine
) -> None:
    content = "id,truth\np1,1\n"
    drop_label_file(settings, "export.csv", content)
    result = ingest(settings, engine)
    (outcome,) = result.rejected
    assert outcome.error is not None
    assert "export.csv" in outcome.error and "'prediction_id'" in outcome.error
    rejected = settings.resolved_labels_dir / "rejected" / "export.csv"
    assert rejected.read_text() == content  # nothing lost
    (recorded,) = file_records(engine)
    assert recorded.status == "rejected" and "IAC_LABELS_ID_COLUMN" in recorded.error
    assert served_rows(engine)["p1"].label is None
    # Fixed setting, file moved back: retried, the record now says processed.
    fixed = Settings(data_dir=settings.data_dir, labels_id_column="id", labels_label_column="truth")
    settled(rejected.rename(settings.resolved_labels_dir / "export.csv"))
    (outcome,) = ingest(fixed, engine).processed
    assert outcome.result.joined == 1
    (recorded,) = file_records(engine)
    assert recorded.status == "processed" and recorded.error is None


def test_a_half_written_csv_waits_then_is_processed_once(
    settings: Settings, engine: Engine
) -> None:
    path = drop_label_file(settings, "late.csv", "prediction_id,label\np1,1\np2,", age=0.0)
    result = ingest(settings, engine)
    assert result.waiting == ("late.csv",) and result.files == ()
    assert path.exists() and file_records(engine) == []
    with path.open("a") as handle:  # the copy completes
        handle.write("0\np3,1\n")
    assert ingest(settings, engine).waiting == ("late.csv",)  # just modified: still waits
    settled(path)
    (outcome,) = ingest(settings, engine).processed
    assert outcome.result.joined == 3
    assert served_rows(engine)["p2"].label == "0"  # not the truncated empty label
    assert ingest(settings, engine).files == ()


def test_partial_names_and_dotfiles_are_left_alone(settings: Settings, engine: Engine) -> None:
    for name in (".hidden.csv", "x.csv.part", "y.csv.tmp", "z.crdownload", "w.partial"):
        drop_label_file(settings, name, "prediction_id,label\np1,1\n")
    result = ingest(settings, engine)
    assert result.files == () and result.waiting == () and result.already_seen == ()
    assert len(list(settings.resolved_labels_dir.iterdir())) == 5
    assert served_rows(engine)["p1"].label is None


def test_a_truncated_parquet_is_rejected_and_kept(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    whole = tmp_path / "whole.parquet"
    pd.DataFrame({"prediction_id": ["p1", "p2"], "label": [1, 0]}).to_parquet(whole)
    cut = whole.read_bytes()[: len(whole.read_bytes()) // 2]
    drop_label_file(settings, "cut.parquet", cut, age=0.0)
    assert ingest(settings, engine).waiting == ("cut.parquet",)  # may still be copying
    settled(settings.resolved_labels_dir / "cut.parquet")
    (outcome,) = ingest(settings, engine).rejected
    assert outcome.error is not None and "not a readable Parquet file" in outcome.error
    assert (settings.resolved_labels_dir / "rejected" / "cut.parquet").read_bytes() == cut
    # The whole file, sent later, is processed.
    drop_label_file(settings, "cut.parquet", whole.read_bytes())
    (outcome,) = ingest(settings, engine).processed
    assert outcome.result.joined == 2
    assert served_rows(engine)["p1"].label == "1"


def test_a_crash_between_record_and_move_does_not_reprocess(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_label_file(settings, "a.csv", "prediction_id,label\np1,1\nghost,1\n")
    real_move = labels._move

    def crash(*args: object) -> Path:
        raise OSError("disk gone")

    monkeypatch.setattr(labels, "_move", crash)
    with pytest.raises(OSError, match="disk gone"):
        ingest(settings, engine)
    monkeypatch.setattr(labels, "_move", real_move)
    assert (settings.resolved_labels_dir / "a.csv").exists()
    result = ingest(settings, engine)
    assert result.already_seen == ("a.csv",) and result.files == ()
    assert (settings.resolved_labels_dir / "processed" / "a.csv").exists()
    assert len(file_records(engine)) == 1
    with engine.connect() as connection:
        assert connection.execute(select(func.count(QuarantinedLabelRow.id))).scalar() == 1


def test_labels_of_unknown_ids_join_when_the_predictions_arrive(
    settings: Settings, engine: Engine
) -> None:
    drop_label_file(settings, "early.csv", "prediction_id,label\nfuture-1,1\nfuture-2,0\n")
    first = ingest(settings, engine)
    assert first.totals.unknown == 2
    log_write(engine, record("r2", [0, 0], ids=["future-1", "future-2"], created=2e9))
    second = ingest(settings, engine)
    assert second.totals.resolved == 2 and second.to_dict()["resolved"] == 2
    rows = served_rows(engine)
    assert rows["future-1"].label == "1" and rows["future-2"].label == "0"
    assert rows["future-2"].label_origin == "early.csv row 2"


def test_files_are_taken_in_name_order_first_label_wins(settings: Settings, engine: Engine) -> None:
    drop_label_file(settings, "2026-01-02.csv", "prediction_id,label\np1,0\n")
    drop_label_file(settings, "2026-01-01.csv", "prediction_id,label\np1,1\n")
    result = ingest(settings, engine)
    assert [f.name for f in result.files] == ["2026-01-01.csv", "2026-01-02.csv"]
    assert served_rows(engine)["p1"].label == "1"
    assert result.totals.conflicts == 1
    assert "2026-01-02.csv: 1 conflicts" in labels.summarise(result.files)


# --- SQL source ----------------------------------------------------------------------


@pytest.fixture
def company_db(tmp_path: Path) -> str:
    """The company's own database (another SQLite file) with a ground-truth table."""
    path = tmp_path / "company.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE outcomes (order_id TEXT, churned INTEGER)")
        connection.executemany(
            "INSERT INTO outcomes VALUES (?, ?)",
            [("p1", 1), ("p2", 0), ("p3", None), ("nobody", 1)],
        )
    connection.close()
    return f"sqlite:///{path}"


def sql_settings(settings: Settings, url: str, query: str) -> Settings:
    return settings.model_copy(
        update={
            "labels_sql_url": SecretStr(url),
            "labels_sql_query": query,
        }
    )


def test_labels_from_a_sql_query(settings: Settings, engine: Engine, company_db: str) -> None:
    served.index_predictions(engine, engine)
    source = sql_settings(
        settings,
        company_db,
        "SELECT order_id AS prediction_id, churned AS label FROM outcomes ORDER BY order_id",
    )
    assert labels.sql_configured(source) and not labels.sql_configured(settings)
    result = labels.ingest_sql(source, engine)
    assert result == served.JoinResult(rows=4, joined=2, unknown=1, invalid=1)
    rows = served_rows(engine)
    assert rows["p1"].label == "1" and rows["p2"].label == "0"  # integers as text
    assert rows["p1"].label_origin.startswith("sql row ")
    # Re-run every ingestion: nothing changes, nothing is kept aside twice.
    again = labels.ingest_sql(source, engine)
    assert again == served.JoinResult(rows=4, duplicates=2, unknown=1, invalid=1)
    assert len(served.quarantined_labels(engine)) == 2


def test_sql_columns_follow_the_settings(
    settings: Settings, engine: Engine, company_db: str
) -> None:
    served.index_predictions(engine, engine)
    source = sql_settings(settings, company_db, "SELECT * FROM outcomes").model_copy(
        update={"labels_id_column": "order_id", "labels_label_column": "churned"}
    )
    assert labels.ingest_sql(source, engine).joined == 2


def test_sql_source_errors_name_the_setting_never_the_password(
    settings: Settings, engine: Engine, company_db: str
) -> None:
    no_column = sql_settings(settings, company_db, "SELECT order_id FROM outcomes")
    with pytest.raises(labels.LabelSourceError, match="IAC_LABELS_SQL_QUERY.*'prediction_id'"):
        labels.ingest_sql(no_column, engine)
    half = settings.model_copy(update={"labels_sql_query": "SELECT 1"})
    with pytest.raises(labels.LabelSourceError, match="must be set together"):
        labels.ingest_sql(half, engine)
    garbled = sql_settings(settings, "postgresql://u:s3cret@:bad:port/x", "SELECT 1")
    with pytest.raises(labels.LabelSourceError) as error:
        labels.ingest_sql(garbled, engine)
    assert "s3cret" not in str(error.value) and "IAC_LABELS_SQL_URL" in str(error.value)
