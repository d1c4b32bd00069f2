"""Pipeline page: each button creates a flow run of its deployment through the Prefect API."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

from tests.ui.conftest import open_page
from tests.utils.servers import free_port
from ui import prefect_ops

TIMEOUT = 60


def _runs_of(api_url: str, full_name: str) -> list:  # type: ignore[type-arg]
    async def read() -> list:  # type: ignore[type-arg]
        async with get_client() as client:
            name = full_name.split("/")[1]
            return await client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
            )

    return prefect_ops.call(read, 30, api_url)


@pytest.mark.parametrize("label", list(prefect_ops.DEPLOYMENTS))
def test_button_creates_a_flow_run_of_its_deployment(ui_prefect: str, label: str) -> None:
    full_name = prefect_ops.DEPLOYMENTS[label]
    before = len(_runs_of(ui_prefect, full_name))
    app = open_page("pipeline", TIMEOUT).run()
    assert not app.exception
    if label == "continuous_training":
        app.checkbox[0].check().run()
    app.button(key=f"run-{label}").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert f"Started {full_name}" in app.success[0].value
    runs = _runs_of(ui_prefect, full_name)
    assert len(runs) == before + 1
    newest = max(runs, key=lambda r: r.created)
    if label == "continuous_training":
        assert newest.parameters == {"force_retrain": True}
    if label == "retrain":
        assert newest.parameters == {"trigger": "manual"}
    # The run shows in the table, with a link to the Prefect UI.
    table = next(m.value for m in app.markdown if m.value.startswith("| flow run"))
    assert f"[{newest.name}](" in table and f"/flow-runs/flow-run/{newest.id})" in table


def test_pause_and_resume_the_schedule(ui_prefect: str) -> None:
    app = open_page("pipeline", TIMEOUT).run()
    assert app.button(key="schedule").label == "Pause schedule"
    app.button(key="schedule").click().run()
    assert prefect_ops.call(prefect_ops.schedule_paused, 30, ui_prefect) is True
    assert app.button(key="schedule").label == "Resume schedule"
    app.button(key="schedule").click().run()
    assert prefect_ops.call(prefect_ops.schedule_paused, 30, ui_prefect) is False


def test_prefect_down_is_a_message_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IAC_UI_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("IAC_UI_PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    app = open_page("pipeline", TIMEOUT).run()
    assert not app.exception
    assert any("Cannot list flow runs" in e.value for e in app.error)
    app.button(key="run-generate").click().run()
    assert not app.exception
    assert any(e.value.startswith("generate: ") for e in app.error)


def test_missing_deployment_is_named(prefect_api: str) -> None:
    with pytest.raises(prefect_ops.PrefectUnavailable, match="deployment not found"):
        prefect_ops.call(
            lambda: prefect_ops.start_run("continuous_training/absent", {}), 30, prefect_api
        )


def test_docker_suffix_drives_the_docker_pool_deployments(
    ui_prefect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose.yaml sets IAC_UI_DEPLOYMENT_SUFFIX=-docker: buttons and the schedule act on
    prefect.yaml's `*-docker` deployments, never on the process pool's."""
    monkeypatch.setenv("IAC_UI_DEPLOYMENT_SUFFIX", "-docker")
    docker_name = "retrain/retrain-docker"
    before = len(_runs_of(ui_prefect, docker_name))
    process_before = len(_runs_of(ui_prefect, "retrain/retrain"))
    app = open_page("pipeline", TIMEOUT).run()
    app.button(key="run-retrain").click().run()
    assert f"Started {docker_name}" in app.success[0].value
    assert len(_runs_of(ui_prefect, docker_name)) == before + 1
    assert len(_runs_of(ui_prefect, "retrain/retrain")) == process_before
    assert any("continuous-training-docker` every 30 s" in m.value for m in app.markdown)


def test_a_malformed_suffix_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from ui.settings import UiSettings

    monkeypatch.setenv("IAC_UI_DEPLOYMENT_SUFFIX", "docker/../x")
    with pytest.raises(ValidationError, match="deployment_suffix"):
        UiSettings()
