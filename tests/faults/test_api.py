"""API faults on the real API process (``python -m api``: uvicorn, uvloop, httptools) and
a real MLflow server (SQLite backend, served artifacts) on 127.0.0.1.

* Overload: 64 connections of one-row predictions, then huge bodies (60 MB with a
  ``Content-Length``, and a chunked one) sent alongside. The huge bodies get 413
  without being read whole; the small requests keep being answered, none fails, none
  times out, their p99 stays within a generous bound of the baseline measured in the
  same test.
* Corrupted model artifact: the champion's serialized model is overwritten in the
  artifact store. A freshly started API serves ``previous`` (200), and says so in
  /ready, /model, /metrics and its log; a later loadable champion is served by hot
  reload; a later unloadable champion leaves the loaded model serving.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from ia_continu.auth import tokens
from ia_continu.data.storage.migrate import migrate
from ia_continu.training import registry
from tests.api.conftest import corrupt_model_file
from tests.utils.live_api import ApiProcess, api_process
from tests.utils.models import elec2_rows, register_version
from tests.utils.servers import (
    free_port,
    mlflow_server_args,
    spawn,
    stop,
    wait_healthy,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration]

ROWS = elec2_rows(64)
CONNECTIONS = 64
# A small request not answered within this counts as timed out. Generous: at load 13 on
# 2 cores the baseline p99 of 64 connections was measured at 6 s.
SMALL_TIMEOUT_S = 30.0
HUGE_BYTES = 60 * 1024 * 1024
READY_TIMEOUT_S = 180.0  # a cold start (imports, model download) on a loaded machine


@dataclass(frozen=True)
class Mlflow:
    """A running ``mlflow server`` with served artifacts."""

    url: str
    artifacts: Path


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mlflow]:
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = home / "mlflow.log"
    proc = spawn(
        mlflow_server_args(port, home),
        log,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, log)
        yield Mlflow(f"http://127.0.0.1:{port}", home / "mlartifacts")
    finally:
        stop(proc)


def _start_api(tmp_path: Path, mlflow: Mlflow, name: str, **extra: str) -> tuple[str, dict]:  # type: ignore[type-arg]
    """Environment of an API serving ``name``, and a bearer token valid for it."""
    state = tmp_path / "state"
    engine = migrate(f"sqlite:///{(state / 'ia_continu.db').resolve()}")
    _, token = tokens.create_token(engine, "fault-test")
    env = {
        "IAC_DATA_DIR": str(state),
        "IAC_MLFLOW_TRACKING_URI": mlflow.url,
        "IAC_REGISTERED_MODEL_NAME": name,
        "IAC_API_RELOAD_INTERVAL_SECONDS": "1",
        **extra,
    }
    return token, env


def _ready(api: ApiProcess, check=lambda body: True) -> dict:  # type: ignore[no-untyped-def,type-arg]
    def answer() -> dict | None:  # type: ignore[type-arg]
        response = httpx.get(f"{api.url}/ready", timeout=SMALL_TIMEOUT_S)
        body = response.json()
        return body if response.status_code == 200 and check(body) else None

    return wait_until(  # type: ignore[no-any-return]
        answer,
        "the API's /ready",
        READY_TIMEOUT_S,
        interval=0.25,
        describe=lambda: api.log_text()[-3000:],
        ignore=(httpx.HTTPError,),
    )


def _metric(api: ApiProcess, line_start: str) -> float | None:
    for line in httpx.get(f"{api.url}/metrics", timeout=SMALL_TIMEOUT_S).text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# --- overload ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    started: float
    seconds: float
    status: int | None  # None: no answer (timeout, connection error)


async def _hammer(url: str, token: str, done: Callable[[], bool]) -> list[Sample]:
    """``CONNECTIONS`` concurrent loops of one-row predictions until ``done()``."""
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=SMALL_TIMEOUT_S, headers=headers
    ) as client:

        async def loop(k: int) -> None:
            i = k
            while not done():
                started = time.monotonic()
                try:
                    status: int | None = (
                        await client.post("/predict", json=ROWS[i % len(ROWS)])
                    ).status_code
                except httpx.HTTPError:
                    status = None
                samples.append(Sample(started, time.monotonic() - started, status))
                i += 1

        await asyncio.gather(*(loop(k) for k in range(CONNECTIONS)))
    return samples


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def test_64_connections_and_huge_bodies(mlflow_server: Mlflow, tmp_path: Path) -> None:
    name = "overload"
    register_version(mlflow_server.url, name)
    token, env = _start_api(tmp_path, mlflow_server, name, IAC_API_ACCESS_LOG="false")
    row = orjson.dumps(ROWS[0])
    huge = b'{"rows": [' + b",".join([row] * (HUGE_BYTES // (len(row) + 1))) + b"]}"
    assert len(huge) > 50 * 1024 * 1024

    huge_results: list[tuple[str, float, float, int | None, str]] = []

    def send_huge() -> None:
        """Two 60 MB bodies with Content-Length, one chunked; one connection each."""

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(huge), 1 << 20):
                yield huge[start : start + (1 << 20)]

        for kind, content in (("length", huge), ("chunked", None), ("length", huge)):
            started = time.monotonic()
            try:
                with httpx.Client(base_url=api.url, timeout=60) as client:
                    response = client.post(
                        "/predict/batch",
                        content=content if content is not None else chunks(),
                        headers={
                            "Authorization": f"Bearer {token}",
                            "content-type": "application/json",
                        },
                    )
                status, text = response.status_code, response.text[:300]
            except httpx.HTTPError as exc:
                status, text = None, repr(exc)
            huge_results.append((kind, started, time.monotonic(), status, text))
            time.sleep(0.5)

    with api_process(env, tmp_path / "api.log") as api:
        _ready(api)
        baseline_s, after_s = 6.0, 2.0
        begin = time.monotonic()
        hard_stop = begin + baseline_s + 3 * 62 + after_s

        def done() -> bool:
            if time.monotonic() > hard_stop:
                return True
            return len(huge_results) == 3 and time.monotonic() > huge_results[-1][2] + after_s

        sender = threading.Timer(baseline_s, send_huge)
        sender.start()
        samples = asyncio.run(_hammer(api.url, token, done))
        sender.join(300)
        served_after = httpx.post(
            f"{api.url}/predict",
            json=ROWS[0],
            headers={"Authorization": f"Bearer {token}"},
            timeout=SMALL_TIMEOUT_S,
        )
        # Declared lengths are refused before routing, the chunked body inside the route.
        refused_413 = sum(
            _metric(api, f'iac_api_requests_total{{method="POST",route="{route}",status="413"}}')
            or 0
            for route in ("unmatched", "/predict/batch")
        )
        log = api.log_text()

    windows = [(started, ended) for _, started, ended, _, _ in huge_results]
    first_huge = windows[0][0] if windows else hard_stop
    last_huge = windows[-1][1] if windows else hard_stop
    baseline = [s for s in samples if begin + 1.0 <= s.started < first_huge]
    during = [s for s in samples if any(a <= s.started <= b for a, b in windows)]
    base_gap = _longest_gap(samples, begin + 1.0, first_huge)
    during_gap = _longest_gap(samples, first_huge, last_huge)
    base_p99 = _p99([s.seconds for s in baseline]) if baseline else float("nan")
    during_p99 = _p99([s.seconds for s in during]) if during else float("nan")
    print(
        f"\nsmall requests: baseline {len(baseline)}, p99 {base_p99:.2f} s, longest time "
        f"without an answer {base_gap:.2f} s; while huge bodies were in flight {len(during)}, "
        f"p99 {during_p99:.2f} s, longest time without an answer {during_gap:.2f} s; huge "
        f"bodies {[(k, st, round(b - a, 2)) for k, a, b, st, _ in huge_results]}"
    )

    # Huge bodies: 413 with a JSON error naming the setting, answered quickly.
    assert len(huge_results) == 3, huge_results
    for kind, started, ended, status, text in huge_results:
        assert status == 413, (kind, status, text)
        assert "IAC_API_MAX_BODY_BYTES" in orjson.loads(text)["detail"]
        assert ended - started < 30, (kind, ended - started)
    assert refused_413 == 3
    assert "request body over" in log and "refused (413)" in log
    assert token not in log and token.split("_", 2)[2] not in log  # no secret logged
    # Small requests: all answered 200, none timed out, none 5xx.
    assert samples, "no small request completed"
    statuses = {s.status for s in samples}
    assert statuses == {200}, {st: sum(s.status == st for s in samples) for st in statuses}
    assert served_after.status_code == 200
    # No stall: while the huge bodies arrive the API keeps answering the small requests
    # about as steadily as before them. Measured as the longest time without any answer:
    # before the fix a 60 MB body stopped every answer for 6-12 s (baseline 0.1 s) at load
    # 10-13. Latency percentiles are printed, not asserted: at that load the baseline p99
    # of 64 connections alone swings between 1 and 14 s.
    assert len(baseline) > 20 and during, (len(baseline), len(during))
    assert during_gap <= 3 * base_gap + 1.5, (base_gap, during_gap)


def _longest_gap(samples: list[Sample], start: float, end: float) -> float:
    """Longest time in [start, end] during which no small request got its answer."""
    answered = sorted(
        s.started + s.seconds for s in samples if start <= s.started + s.seconds <= end
    )
    marks = [start, *answered, end]
    return max(b - a for a, b in zip(marks, marks[1:], strict=False))


# --- corrupted artifact --------------------------------------------------------------


class _Prober:
    """Posts one row every 0.2 s in a thread; records (time, status, version)."""

    def __init__(self, url: str, token: str):
        self.seen: list[tuple[float, int | None, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, token), daemon=True)

    def _run(self, url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, timeout=SMALL_TIMEOUT_S, headers=headers) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/predict", json=ROWS[0])
                    version = response.json().get("model_version")
                    self.seen.append((time.monotonic(), response.status_code, version))
                except httpx.HTTPError:
                    self.seen.append((time.monotonic(), None, None))
                self._stop.wait(0.2)

    def __enter__(self) -> _Prober:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_corrupted_champion_artifact(mlflow_server: Mlflow, tmp_path: Path) -> None:
    name = "corrupt"
    uri = mlflow_server.url
    v1 = register_version(uri, name, positions=(0, 1))
    v2 = register_version(uri, name, positions=(2, 3))  # champion; previous = v1
    corrupt_model_file(uri, name, v2, mlflow_server.artifacts)
    token, env = _start_api(tmp_path, mlflow_server, name)

    with api_process(env, tmp_path / "api.log") as api:
        # A fresh start: the champion cannot be loaded, previous serves.
        body = _ready(api)
        assert (body["model_version"], body["alias"], body["alias_version"]) == (
            v1,
            "previous",
            v2,
        )
        assert f"champion version {v2} cannot be loaded" in body["fallback_reason"]
        model = httpx.get(f"{api.url}/model", timeout=SMALL_TIMEOUT_S).json()
        assert (model["version"], model["alias"]) == (v1, "previous")
        assert _metric(api, f'iac_api_model_fallback{{model_name="{name}"}}') == 1
        assert f"serving previous version {v1} of {name} instead" in api.log_text()

        with _Prober(api.url, token) as prober:
            time.sleep(1.0)
            # A loadable champion is promoted: hot reload serves it, fallback over.
            v3 = register_version(uri, name, positions=(4, 5))
            promoted_at = time.monotonic()
            body = _ready(api, lambda b: b["model_version"] == v3)
            recovered_s = time.monotonic() - promoted_at
            assert (body["alias"], body["fallback_reason"]) == ("champion", None)
            assert _metric(api, f'iac_api_model_fallback{{model_name="{name}"}}') == 0

            # An unloadable champion is promoted: the loaded model keeps serving.
            v4 = register_version(uri, name, positions=(6, 7), promote=False)
            corrupt_model_file(uri, name, v4, mlflow_server.artifacts)
            # Moved by hand: the promotion path now refuses unloadable versions; the
            # artifact store can still rot under a promoted one.
            registry.client(uri).set_registered_model_alias(name, registry.CHAMPION, str(v4))
            body = _ready(api, lambda b: b["alias_version"] == v4 and b["fallback_reason"])
            assert (body["model_version"], body["alias"]) == (v3, "champion")
            assert f"champion version {v4} cannot be loaded" in body["fallback_reason"]
            assert f"keeping version {v3}" in body["fallback_reason"]
            assert _metric(api, f'iac_api_model_fallback{{model_name="{name}"}}') == 1
            time.sleep(3)  # a few more polls: still serving v3
        log = api.log_text()

    assert prober.seen, "the prober sent nothing"
    statuses = {status for _, status, _ in prober.seen}
    assert statuses == {200}, statuses  # served throughout: no 5xx, no 503, no timeout
    versions = [version for _, _, version in prober.seen]
    assert set(versions) <= {v1, v3} and versions[-1] == v3
    assert v2 not in versions and v4 not in versions
    assert f"champion version {v4} cannot be loaded" in log and f"keeping version {v3}" in log
    assert token.split("_", 2)[2] not in log  # no secret logged
    assert recovered_s < 2 * 1 + 30  # two polls plus the load, on a loaded machine
    print(f"fallback to previous at start; new good champion served after {recovered_s:.1f} s")
