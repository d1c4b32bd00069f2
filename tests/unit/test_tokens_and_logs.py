"""Token storage never keeps a secret; log lines never show one."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from loguru import logger
from sqlalchemy import select
from sqlalchemy.orm import Session

from ia_continu.auth.tokens import TokenVerifier, create_token, list_tokens, revoke_token
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import ApiTokenRow
from ia_continu.logs import configure_logging, redact


def test_only_the_hash_is_stored(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 't.db'}")
    info, token = create_token(engine, "robot", timedelta(days=30))
    secret = token.split("_", 2)[2]
    with Session(engine) as session:
        row = session.scalars(select(ApiTokenRow)).one()
    assert secret not in row.secret_sha256 and len(row.secret_sha256) == 64
    assert info.expires_at is not None and info.state() == "active"
    assert [t.name for t in list_tokens(engine)] == ["robot"]
    revoked = revoke_token(engine, info.id)
    assert revoked.state() == "revoked"
    assert revoke_token(engine, "robot").revoked_at == revoked.revoked_at  # idempotent
    assert TokenVerifier(engine, cache_seconds=0).verify(token) is None


def test_bad_lifetimes_and_unknown_tokens(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 't.db'}")
    with pytest.raises(ValueError, match="positive"):
        create_token(engine, "x", timedelta(0))
    with pytest.raises(LookupError):
        revoke_token(engine, "ghost")
    verifier = TokenVerifier(engine, cache_seconds=60)
    assert verifier.verify("iac_deadbeef_" + "x" * 43) is None
    assert verifier.cached("iac_deadbeef_" + "x" * 43) == (True, None)  # unknown ids cached too


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("token iac_0123abcd_" + "s" * 43 + " used", "s" * 43),
        ("post to https://discord.com/api/webhooks/123/SeCrEt-tok", "SeCrEt-tok"),
        ("db postgresql://iac:hunter2@db:5432/iac", "hunter2"),
    ],
)
def test_redact(text: str, leak: str) -> None:
    assert leak not in redact(text)


def test_log_lines_carry_request_id_and_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("INFO", json=True)
    with logger.contextualize(request_id="req-42"):
        logger.info("calling with Bearer topsecret")
    logger.info("outside")
    lines = buffer.getvalue().splitlines()
    assert '"request_id": "req-42"' in lines[0] and "topsecret" not in lines[0]
    assert '"request_id": "-"' in lines[1]
    configure_logging("INFO")


def test_api_does_not_import_prefect() -> None:
    code = "import sys, api.main, api.__main__; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flow_run_processes_log_prefect_and_project_lines_as_redacted_json(
    tmp_path: Path,
) -> None:
    """A flow-run process (PREFECT__FLOW_RUN_ID set) with IAC_LOG_JSON: Prefect's console
    lines and ours are JSON on stderr, redacted, and copied to IAC_LOG_DIR."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("IAC_", "PREFECT_"))},
        "PREFECT__FLOW_RUN_ID": "00000000-0000-0000-0000-000000000000",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "IAC_LOG_JSON": "true",
        "IAC_LOG_DIR": str(tmp_path / "logs"),
    }
    code = (
        "import logging, flows\n"
        "from loguru import logger\n"
        "logging.getLogger('prefect').warning('prefect says Bearer s3cr3t')\n"
        "logger.info('ours: https://discord.com/api/webhooks/1/tok3n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    messages = [line["record"]["message"] for line in lines]
    assert "prefect says Bearer ***" in messages
    assert "ours: https://discord.com/api/webhooks/1/***" in messages
    assert "s3cr3t" not in result.stderr and "tok3n" not in result.stderr
    written = (tmp_path / "logs" / "ia-continu.log").read_text()
    assert "prefect says Bearer ***" in written


def test_other_processes_keep_their_logging(tmp_path: Path) -> None:
    """Importing flows outside a flow run (tests, tools) reconfigures nothing."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IAC_", "PREFECT_"))}
    env.update(IAC_LOG_JSON="true", PREFECT_HOME=str(tmp_path / "prefect"))
    code = "import flows\nfrom loguru import logger\nlogger.info('plain')\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "plain" in result.stderr
    assert not result.stderr.lstrip().startswith("{")
