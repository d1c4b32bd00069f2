"""The ia-continu CLI: clear messages naming the setting, never a stack trace."""

from __future__ import annotations

import pytest

from ia_continu import cli


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


def test_rollback_without_previous_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IAC_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    assert cli.main(["rollback"]) == 1
    assert "no 'previous' alias" in capsys.readouterr().err
