"""Property-based run of schemathesis against the app's own OpenAPI document: whatever
the generated request, the API never answers 5xx and answers what it documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from api.main import create_app
from api.settings import ApiSettings
from ia_continu.auth.tokens import create_token
from ia_continu.data.storage.migrate import migrate
from ia_continu.settings import Settings
from tests.api.conftest import Registry
from tests.utils.live_api import serve_in_thread

EXAMPLES = 100  # per operation


@pytest.fixture(scope="module")
def live(
    registry_with_champion: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(base URL, token) of the API served by uvicorn with auth on."""
    state: Path = tmp_path_factory.mktemp("schemathesis")
    settings_ = Settings(
        data_dir=state,
        mlflow_tracking_uri=registry_with_champion.tracking_uri,
        registered_model_name=registry_with_champion.name,
    )
    _, token = create_token(migrate(settings_.resolved_database_url), "schemathesis")
    app = create_app(ApiSettings(max_batch_rows=20), settings_)
    with serve_in_thread(app) as base_url:
        yield base_url, token


def test_no_server_error_on_any_operation(live: tuple[str, str]) -> None:
    # schemathesis' pytest integration (from_fixture) does not run under pytest 9, so
    # each operation's hypothesis strategy is driven directly.
    base_url, token = live
    api_schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/predict/batch", "/ready", "/model"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_5xx(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error]
            )

        no_5xx()
