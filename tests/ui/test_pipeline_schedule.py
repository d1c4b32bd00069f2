"""Pipeline page: the loop's interval shown is the deployment's schedule in the Prefect
API, not a number written in the page."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.types import PositiveDuration

from tests.ui.conftest import open_page
from ui import prefect_ops

TIMEOUT = 60
SUFFIX = "-every12"


async def _deploy_every_12_seconds() -> None:
    async with get_client() as client:
        flow_name, name = prefect_ops.deployments_for(SUFFIX)["continuous_training"].split("/")
        flow_id = await client.create_flow_from_name(flow_name)
        await client.create_deployment(
            flow_id=flow_id,
            name=name,
            # Paused: the server schedules no run, the schedule is still read back.
            paused=True,
            schedules=[
                DeploymentScheduleCreate(
                    schedule=IntervalSchedule(interval=PositiveDuration(seconds=12))
                )
            ],
        )


def test_the_interval_shown_is_the_deployments(
    ui_prefect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefect_ops.call(_deploy_every_12_seconds, 30, ui_prefect)
    monkeypatch.setenv("IAC_UI_DEPLOYMENT_SUFFIX", SUFFIX)
    monkeypatch.setenv("IAC_SCHEDULE_INTERVAL_SECONDS", "45")  # the API wins over settings
    app = open_page("pipeline", TIMEOUT).run()
    assert not app.exception
    assert any(
        m.value == "`continuous_training/continuous-training-every12` every 12 s: **paused**"
        for m in app.markdown
    ), [m.value for m in app.markdown]


def test_without_an_interval_schedule_the_setting_is_shown_as_such(
    ui_prefect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test server's deployments have no schedule: the page says what the bootstrap
    would deploy (IAC_SCHEDULE_INTERVAL_SECONDS), and that the deployment has none."""
    monkeypatch.setenv("IAC_SCHEDULE_INTERVAL_SECONDS", "45")
    app = open_page("pipeline", TIMEOUT).run()
    (line,) = [m.value for m in app.markdown if m.value.startswith("`continuous_training/")]
    assert "every 45 s once deployed by the bootstrap" in line
    assert "the deployment has no interval schedule" in line
