"""Bearer tokens: created, listed and revoked from the CLI; /predict needs one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from ia_continu import cli
from ia_continu.auth.tokens import TokenVerifier, create_token
from ia_continu.data.storage.migrate import migrate
from ia_continu.data.storage.tables import ApiTokenRow
from tests.api.conftest import AppFactory
from tests.utils.models import elec2_rows

ROW = elec2_rows(1)[0]


def _cli_token(name: str, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert cli.main(["token", "create", name, *extra]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("iac_")
    return token


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The CLI reads IAC_DATA_DIR; make_app uses the same state directory.
    monkeypatch.setenv("IAC_DATA_DIR", str(tmp_path / "state"))
    assert cli.main(["migrate"]) == 0  # as the bootstrap or the API's start-up does


def test_predict_requires_a_token_but_health_ready_metrics_do_not(make_app: AppFactory) -> None:
    with TestClient(make_app()) as client:
        refused = client.post("/predict", json=ROW)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert (
            client.post("/predict", json=ROW, headers={"Authorization": "Basic x"}).status_code
            == 401
        )
        bogus = {"Authorization": "Bearer iac_00000000_" + "A" * 43}
        assert client.post("/predict/batch", json={"rows": [ROW]}, headers=bogus).status_code == 401
        for path in ("/health", "/ready", "/metrics"):
            assert client.get(path).status_code == 200


@pytest.mark.usefixtures("cli_env")
def test_token_lifecycle_through_the_cli(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _cli_token("ci-robot", capsys)
    with TestClient(make_app()) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.post("/predict", json=ROW, headers=headers).status_code == 200
        # The secret differs by one character: refused.
        forged = token[:-1] + ("A" if token[-1] != "A" else "B")
        assert (
            client.post(
                "/predict", json=ROW, headers={"Authorization": f"Bearer {forged}"}
            ).status_code
            == 401
        )

        assert cli.main(["token", "list"]) == 0
        listing = capsys.readouterr().out
        assert "ci-robot" in listing and "active" in listing and token not in listing

        assert cli.main(["token", "revoke", "ci-robot"]) == 0
        assert client.post("/predict", json=ROW, headers=headers).status_code == 401
        assert cli.main(["token", "list"]) == 0
        assert "revoked" in capsys.readouterr().out


@pytest.mark.usefixtures("cli_env")
def test_expired_token_is_refused(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    token = _cli_token("short-lived", capsys, "--expires-in-days", "1")
    engine = migrate(f"sqlite:///{(tmp_path / 'state' / 'ia_continu.db').resolve()}")
    with TestClient(make_app()) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.post("/predict", json=ROW, headers=headers).status_code == 200
        with engine.begin() as connection:
            connection.execute(
                update(ApiTokenRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        assert client.post("/predict", json=ROW, headers=headers).status_code == 401
    assert cli.main(["token", "list"]) == 0
    assert "expired" in capsys.readouterr().out


@pytest.mark.usefixtures("cli_env")
def test_cli_errors_are_messages(capsys: pytest.CaptureFixture[str]) -> None:
    _cli_token("dup", capsys)
    assert cli.main(["token", "create", "dup"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["token", "create", "bad name!"]) == 1
    assert cli.main(["token", "revoke", "nobody"]) == 1
    err = capsys.readouterr().err
    assert "nobody" in err and "Traceback" not in err


def test_auth_disabled_explicitly(make_app: AppFactory) -> None:
    with TestClient(make_app(auth="disabled")) as client:
        assert client.post("/predict", json=ROW).status_code == 200


def test_verifier_cache_bounds_revocation_delay(tmp_path: Path) -> None:
    engine = migrate(f"sqlite:///{tmp_path / 'tokens.db'}")
    info, token = create_token(engine, "cached")
    verifier = TokenVerifier(engine, cache_seconds=3600)
    assert verifier.cached(token) == (False, None)  # nothing cached yet
    assert verifier.verify(token) == info
    assert verifier.cached(token) == (True, info)
    assert verifier.cached("garbage") == (True, None)  # malformed: decided without the DB
    assert TokenVerifier(engine, cache_seconds=0).verify(token[:-2] + "xx") is None
