"""Operator password hashes: scrypt, salted, constant-time check, CLI never echoes."""

from __future__ import annotations

import io
import sys

import pytest

from ia_continu import cli
from ia_continu.auth.passwords import hash_password, verify_password


def test_hash_and_verify() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt:16384:8:1:") and "correct" not in encoded
    assert encoded != hash_password("correct horse")  # salted
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    for broken in ("", "scrypt:1", "bcrypt:1:2:3:4:5", encoded.replace(":8:", ":x:")):
        assert not verify_password("correct horse", broken)
    with pytest.raises(ValueError, match="8 characters"):
        hash_password("short")


def test_cli_prints_only_the_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-operator\n"))
    assert cli.main(["ui-password"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("IAC_UI_PASSWORD_HASH=scrypt:") and "s3cret" not in out
    assert verify_password("s3cret-operator", out.split("=", 1)[1])
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli.main(["ui-password"]) == 1
