"""bench.traffic: rows posted at the rate, labels dropped after the delay, atomically,
with the ids the API answered; statistics a drift test can time things with.

The API is faked (``httpx.MockTransport``; a local ``http.server`` for the command line):
the simulator's timing and files are under test here, the real API elsewhere."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest

from bench import traffic
from bench.traffic import TrafficSimulator
from ia_continu.data.sources import SyntheticSource

SOURCE = SyntheticSource(mode="concept_drift", batch_size=10, period_batches=2)


class FakeApi:
    """Answers like the prediction API: ids (client's or ``req<n>[/i]``), a version that
    can change after ``switch_after`` requests, chosen requests failing."""

    def __init__(
        self,
        fail: dict[int, int | None] | None = None,
        switch_after: int | None = None,
    ):
        self.fail = fail or {}  # request index -> status (None: connection error)
        self.switch_after = switch_after
        self.calls: list[tuple[str, Any, httpx.Headers]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        n = len(self.calls)
        body = orjson.loads(request.content)
        self.calls.append((request.url.path, body, request.headers))
        if n in self.fail:
            status = self.fail[n]
            if status is None:
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(status, json={"detail": "no"})
        version = 2 if self.switch_after is not None and n >= self.switch_after else 1
        rid = f"req{n}"
        common = {"model_name": "m", "model_version": version, "request_id": rid}
        if request.url.path == "/predict":
            pid = body.get("prediction_id", rid)
            return httpx.Response(
                200, json={"prediction_id": pid, "prediction": 1, "probability": 0.9, **common}
            )
        predictions = [
            {"prediction_id": r.get("prediction_id", f"{rid}/{i}"), "prediction": 1}
            for i, r in enumerate(body["rows"])
        ]
        return httpx.Response(200, json={"predictions": predictions, **common})


def _simulator(api: FakeApi, labels_dir: Path, **overrides: Any) -> TrafficSimulator:
    options: dict[str, Any] = {
        "token": "tok",
        "start_position": 2,
        "batches": 2,
        "rows_per_request": 5,
        "rate": 400.0,
        "label_delay": 0.5,
        "label_batch_seconds": 0.0,
        "run_id": "r1",
        **overrides,
    }
    return TrafficSimulator(
        "http://api.test", SOURCE, labels_dir, transport=httpx.MockTransport(api), **options
    )


def _true_label(position: int, row: int) -> str:
    return str(SOURCE.batch(position)["target"].iloc[row])


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str)


@pytest.fixture
def replace_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every rename the simulator does; each must move a hidden temp file of the same
    directory onto a name that does not exist yet (readers never see a partial file)."""
    calls: list[tuple[str, str]] = []
    real = os.replace

    def spy(src: Any, dst: Any) -> None:
        src, dst = Path(src), Path(dst)
        assert src.parent == dst.parent and src.name == f".{dst.name}.tmp"
        assert src.stat().st_size > 0 and not dst.exists()
        calls.append((src.name, dst.name))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)  # bench.traffic calls os.replace
    return calls


def test_labels_arrive_after_the_delay_atomically_with_the_right_ids(
    tmp_path: Path, replace_spy: list[tuple[str, str]]
) -> None:
    api = FakeApi()
    simulator = _simulator(api, tmp_path / "inbox", label_delay=1.0).start()
    deadline = time.monotonic() + 5
    while simulator.stats.rows_sent < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list((tmp_path / "inbox").iterdir()) == []  # all sent, no label due yet
    assert simulator.wait(5)
    stats = simulator.stop()
    answered = {i: r.answered_at for r in simulator.sent_requests for i in r.ids}
    files = simulator.label_files
    assert files and all(f.kind == "labels" for f in files)
    labelled: dict[str, str] = {}
    for f in files:
        frame = _read(f.path)
        assert list(frame.columns) == ["prediction_id", "label"] and len(frame) == f.n_rows
        assert f.path.name.startswith("labels-r1-") and f.path.suffix == ".csv"
        for pid, label in zip(frame["prediction_id"], frame["label"], strict=True):
            assert f.written_at >= answered[pid] + 1.0 - 0.01  # never before the delay
            labelled[pid] = label
    expected = {f"tr1-{p}-{r}": _true_label(p, r) for p in (2, 3) for r in range(10)}
    assert labelled == expected
    assert len(replace_spy) == len(files) and not list((tmp_path / "inbox").glob(".*"))
    # The API saw client ids, batches of 5, the token.
    assert [c[0] for c in api.calls] == ["/predict/batch"] * 4
    assert [r["prediction_id"] for c in api.calls for r in c[1]["rows"]] == list(expected)
    assert "prediction_id" not in SOURCE.schema.features
    assert api.calls[0][2]["authorization"] == "Bearer tok"
    assert (stats.rows_sent, stats.rows_served, stats.requests) == (20, 20, 4)
    assert stats.errors == {} and stats.labels_written == 20 and stats.labels_pending == 0
    assert stats.label_files == len(files) and stats.done and stats.sending_done
    assert set(stats.first_served) == {2, 3} and set(stats.model_versions) == {1}
    # Rate: 20 rows at 400 rows/s take about 50 ms, not 4 round trips of sleep.
    sent = [r.sent_at for r in simulator.sent_requests]
    assert 0.03 <= sent[-1] - sent[0] < 1.0


def test_errors_versions_and_first_served(tmp_path: Path) -> None:
    """One row per request to /predict: a 503 and a lost connection are counted and
    get no label; the first answer of a new version and of each position is timed."""
    api = FakeApi(fail={3: 503, 4: None}, switch_after=12)
    simulator = _simulator(
        api, tmp_path / "inbox", rows_per_request=1, label_delay=0.0, rate=1000.0
    )
    stats = simulator.run(until=5.0)
    requests = simulator.sent_requests
    assert [c[0] for c in api.calls] == ["/predict"] * 20
    assert (stats.requests, stats.rows_sent, stats.rows_served) == (20, 20, 18)
    assert stats.errors == {"503": 1, "transport": 1}
    assert [r.status for r in requests[2:6]] == [200, 503, None, 200]
    assert stats.first_served == {2: requests[0].answered_at, 3: requests[10].answered_at}
    assert stats.model_versions == {1: requests[0].answered_at, 2: requests[12].answered_at}
    labelled = pd.concat([_read(f.path) for f in simulator.label_files])
    assert len(labelled) == stats.labels_written == 18
    assert not {"tr1-2-3", "tr1-2-4"} & set(labelled["prediction_id"])


def test_server_ids_label_share_and_parquet(tmp_path: Path) -> None:
    api = FakeApi()
    simulator = _simulator(
        api,
        tmp_path / "inbox",
        client_ids=False,
        label_share=0.5,
        label_format="parquet",
        label_delay=0.05,
        batches=4,
        seed=3,
    )
    stats = simulator.run(until=5.0)
    assert all("prediction_id" not in r for c in api.calls for r in c[1]["rows"])
    frame = pd.concat([_read(f.path) for f in simulator.label_files], ignore_index=True)
    assert all(f.path.suffix == ".parquet" for f in simulator.label_files)
    served = {i: r.rows[k] for r in simulator.sent_requests for k, i in enumerate(r.ids)}
    assert set(frame["prediction_id"]) <= set(served)
    assert all(i.startswith("req") for i in served)
    assert 8 <= len(frame) <= 32 and stats.labels_written == len(frame)  # about half of 40
    for pid, label in zip(frame["prediction_id"], frame["label"], strict=True):
        assert label == _true_label(*served[pid])
    # Same seed, same rows labelled.
    again = _simulator(
        FakeApi(), tmp_path / "again", client_ids=False, label_share=0.5, batches=4, seed=3
    )
    again.run(until=5.0)
    assert again.stats.labels_written == stats.labels_written


def test_stop_flushes_pending_labels_only_when_asked(tmp_path: Path) -> None:
    def sent_all(stats: traffic.TrafficStats) -> bool:
        return stats.sending_done

    kept = _simulator(FakeApi(), tmp_path / "flushed", label_delay=60.0)
    kept.run(until=sent_all)
    assert kept.label_files == [] and kept.stats.labels_pending == 20
    stats = kept.stop(flush_labels=True)
    assert (stats.label_files, stats.labels_written, stats.labels_pending) == (1, 20, 0)
    dropped = _simulator(FakeApi(), tmp_path / "dropped", label_delay=60.0)
    dropped.run(until=sent_all)
    assert dropped.stop().labels_pending == 20
    assert list((tmp_path / "dropped").iterdir()) == []


def test_label_batch_seconds_gathers_files(tmp_path: Path) -> None:
    one_each = _simulator(FakeApi(), tmp_path / "a", rate=100.0, label_delay=0.0)
    one_each.run(until=5.0)
    gathered = _simulator(
        FakeApi(), tmp_path / "b", rate=100.0, label_delay=0.0, label_batch_seconds=1.0
    )
    gathered.run(until=5.0)
    assert one_each.stats.label_files == 4  # one file per request
    assert gathered.stats.label_files == 1 and gathered.stats.labels_written == 20


def test_bad_label_files(tmp_path: Path) -> None:
    simulator = _simulator(FakeApi(), tmp_path / "inbox", label_delay=0.0, bad_label_files=True)
    stats = simulator.run(until=5.0)
    kinds = {f.kind: f.path for f in simulator.label_files if f.kind != "labels"}
    assert set(kinds) == {"bad-columns", "unknown-id", "conflict"} and stats.bad_label_files == 3
    first = _read(next(f.path for f in simulator.label_files if f.kind == "labels"))
    served_id, true_label = first["prediction_id"][0], first["label"][0]
    assert list(_read(kinds["bad-columns"]).columns) == ["id", "truth"]
    unknown = _read(kinds["unknown-id"])
    assert unknown["prediction_id"][0] not in {i for r in simulator.sent_requests for i in r.ids}
    conflict = _read(kinds["conflict"])
    assert list(conflict["prediction_id"]) == [served_id, served_id]
    assert conflict["label"][0] == true_label and conflict["label"][1] in {"0", "1"} - {true_label}
    assert stats.labels_written == 20  # the fault files are not counted as labels


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="rate must be > 0; label_share must be in"):
        TrafficSimulator("http://x", SOURCE, Path("unused"), rate=0, label_share=2)


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def log_message(self, *_args: object) -> None:
        return None

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(200, {"ready": True})

    def do_POST(self) -> None:
        rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["rows"]
        self.seen.append((self.path, self.headers.get("Authorization")))
        predictions = [{"prediction_id": r["prediction_id"], "prediction": 1} for r in rows]
        self._answer(200, {"predictions": predictions, "model_version": 7})


@pytest.fixture
def local_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(5)


def test_command_line_against_a_local_http_server(
    tmp_path: Path,
    local_api: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IAC_BATCH_SIZE", "20")
    token_file = tmp_path / "api.token"
    token_file.write_text("secret-token\n")
    args = ["--api-url", local_api, "--token-file", str(token_file), "--stream", "synthetic"]
    args += ["--rate", "500", "--rows-per-request", "10", "--label-delay", "0.2"]
    args += ["--label-batch-seconds", "0", "--labels-dir", str(tmp_path / "labels")]
    args += ["--batches", "1", "--start-position", "3", "--run-id", "cli", "--wait-ready"]
    main: Callable[..., int] = traffic.main
    assert main(args) == 0
    assert _Handler.seen == [("/predict/batch", "Bearer secret-token")] * 2
    frame = pd.concat([_read(p) for p in sorted((tmp_path / "labels").glob("labels-*.csv"))])
    assert list(frame["prediction_id"]) == [f"tcli-3-{r}" for r in range(20)]
    out = capsys.readouterr().out
    assert "20/20 rows served in 2 requests" in out and "model versions 7" in out
    assert "secret-token" not in out


def test_command_line_gives_up_when_never_ready(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--api-url", "http://127.0.0.1:9", "--stream", "synthetic", "--wait-ready"]
    args += ["--wait-timeout", "0", "--token-file", str(tmp_path / "missing.token")]
    assert traffic.main(args) == 1
    assert "token file" in capsys.readouterr().out
