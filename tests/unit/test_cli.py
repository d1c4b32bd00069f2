"""The ia-continu CLI: clear messages naming the setting, never a stack trace."""

from __future__ import annotations

import pytest

from ia_continu import cli
from ia_continu.settings import get_settings


def test_check_prints_settings_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IAC_DISCORD_WEBHOOK_URL", "https://discord.invalid/api/webhooks/1/tok")
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "IAC_BATCH_SIZE=336" in out
    assert "tok" not in out and "IAC_DISCORD_WEBHOOK_URL=**********" in out


def test_bad_setting_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IAC_BATCH_SIZE", "five")
    monkeypatch.setenv("IAC_DATA_SOURCE", "kafka")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "IAC_BATCH_SIZE" in err and "IAC_DATA_SOURCE" in err
    assert "Traceback" not in err


def test_migrate_creates_the_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path))
    assert cli.main(["migrate"]) == 0
    assert (tmp_path / "ia_continu.db").exists()


def test_a_database_command_before_migrate_names_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path))
    assert cli.main(["token", "list"]) == 2
    err = capsys.readouterr().err
    assert "is not migrated" in err and "run `ia-continu migrate`" in err
    assert "Traceback" not in err


def test_rollback_without_previous_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IAC_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    assert cli.main(["rollback"]) == 1
    assert "no 'previous' alias" in capsys.readouterr().err


def test_check_and_migrate_mask_every_url_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IAC_DATABASE_URL", "postgresql+psycopg://iac:hunter2@db:5432/iac")
    monkeypatch.setenv("IAC_MLFLOW_TRACKING_URI", "https://ops:ml%40pass@mlflow.example:5000/")
    monkeypatch.setenv("IAC_PUSHGATEWAY_URL", "http://push:gw-secret@127.0.0.1:9091")
    monkeypatch.setenv("IAC_PREDICTION_LOG_DATABASE_URL", "postgresql://log:pl-secret@db/log")
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    for secret in ("hunter2", "ml%40pass", "ml@pass", "gw-secret", "pl-secret"):
        assert secret not in out
    assert "IAC_DATABASE_URL=postgresql+psycopg://iac:***@db:5432/iac" in out
    assert "IAC_MLFLOW_TRACKING_URI=https://ops:***@mlflow.example:5000/" in out
    assert "IAC_PUSHGATEWAY_URL=http://push:***@127.0.0.1:9091" in out
    assert "IAC_PREDICTION_LOG_DATABASE_URL=postgresql://log:***@db/log" in out
    # The migrate command prints the database URL too.
    monkeypatch.setenv("IAC_DATABASE_URL", f"sqlite:///{tmp_path / 'p.db'}")
    monkeypatch.setenv("IAC_PREDICTION_LOG_DATABASE_URL", f"sqlite:///{tmp_path / 'log.db'}")
    get_settings.cache_clear()
    assert cli.main(["migrate"]) == 0
    assert (tmp_path / "log.db").exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("http://u:p@h:1/a?b=c", "http://u:***@h:1/a?b=c"),
    ],
)
def test_mask_url(value: str, expected: str) -> None:
    assert cli.mask_url(value) == expected


@pytest.mark.parametrize("days", ["0", "-3", "nan", "inf", "1e9", "soon"])
def test_token_lifetime_must_be_positive(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    """``--expires-in-days 0`` used to create a token that never expires."""
    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["token", "create", "robot", "--expires-in-days", days])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--expires-in-days" in err and "Traceback" not in err
    assert not (tmp_path / "ia_continu.db").exists()  # nothing created


def test_token_with_a_short_lifetime_expires(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path))
    assert cli.main(["migrate"]) == 0
    assert cli.main(["token", "create", "robot", "--expires-in-days", "0.5"]) == 0
    assert "expires never" not in capsys.readouterr().out
    assert cli.main(["token", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "robot" in x)
    assert line.split()[-1] != "never"
