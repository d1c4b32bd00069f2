r"""Traffic simulator: replays a stream as API clients, then drops the true labels late.

Rows of a stream (any :class:`ia_continu.data.sources.BatchSource`: the replay or synthetic
source the ``IAC_*`` settings name) are posted to ``POST /predict`` (one row per
request) or ``POST /predict/batch`` at a fixed rate, each with a client-given
``prediction_id`` ``t<run>-<position>-<row>`` (or the id the API assigns). The true
label of each served row is written ``label_delay`` seconds after its answer arrived
(up to ``label_batch_seconds`` later: labels due together share one file), as a label file ``labels-<run>-<seq>.csv`` (columns ``prediction_id,label``; or
``.parquet``) in the label inbox, atomically: written as ``.labels-….tmp`` then renamed,
so the ingestion never reads half a file.

    python -m bench.traffic --api-url http://127.0.0.1:8000 --token-file .iac/console.token \
        --rate 50 --rows-per-request 10 --label-delay 60 --labels-dir .iac/labels \
        [--stream synthetic|replay] [--batches N] [--start-position P] [--wait-ready]

Other settings of the stream come from the ``IAC_*`` environment (``IAC_REPLAY_PATH``,
``IAC_BATCH_SIZE``, …; with ``IAC_DATA_SOURCE=serving`` the default stream is
``IAC_SERVING_SEED_SOURCE``). A summary line is printed every 10 s. With ``--batches``
the run ends once those batches are sent and their labels written; otherwise it runs
until the stream ends or SIGINT/SIGTERM (pending labels are then dropped, as a client
that goes away would; ``--flush-on-exit`` writes them at once).

``--bad-label-files`` also writes, right after the first good label file, three files
the label ingestion must refuse or quarantine: ``labels-<run>-bad-columns.csv`` (columns
``id,truth``: the file is rejected), ``labels-<run>-unknown-id.csv`` (an id no
prediction has: quarantined ``unknown_id``) and ``labels-<run>-conflict.csv`` (a served
id twice, with its true label then another: the second row is quarantined ``conflict``).

Requests are sent one after the other on one connection: the rate is a target, and a
slow API makes the simulator fall behind (``lag_seconds`` in the stats) rather than
pile up concurrent requests. Failed requests (any status but 200, or no answer) are
counted by status and not retried; their rows get no label.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal, cast

import httpx
import numpy as np
import orjson
import pandas as pd

from ia_continu.data.sources import BatchSource, SourceConfigError, StreamExhausted, build_source
from ia_continu.settings import Settings

LabelFormat = Literal["csv", "parquet"]
SUMMARY_SECONDS = 10.0
_POLL_SECONDS = 0.2  # longest sleep: bounds how late stop() and run(until=...) are seen


@dataclass(frozen=True)
class SentRequest:
    """One request sent: when (Unix s), which stream rows, and how it was answered.

    Attributes:
        sent_at: Unix time the request was sent.
        answered_at: Unix time the answer (or the transport error) arrived.
        rows: ``(position, row)`` of each stream row in the request, in order.
        status: HTTP status, or ``None`` when no answer arrived (transport error).
        model_version: version that answered (200 only).
        ids: prediction ids of the rows (200 only; empty otherwise).
    """

    sent_at: float
    answered_at: float
    rows: tuple[tuple[int, int], ...]
    status: int | None
    model_version: int | None
    ids: tuple[str, ...]


@dataclass(frozen=True)
class LabelFile:
    """A label file written to the inbox: its path, Unix write time, rows and kind
    (``labels``, or ``bad-columns`` / ``unknown-id`` / ``conflict`` for the faults)."""

    path: Path
    written_at: float
    n_rows: int
    kind: str = "labels"


@dataclass
class TrafficStats:
    """What the simulator did so far (a snapshot: see :attr:`TrafficSimulator.stats`).

    Times are Unix seconds (``time.time()``), comparable with the API's, MLflow's and
    Prefect's timestamps.

    Attributes:
        run: the run id in the prediction ids and label file names.
        rows_sent: rows posted (answered or not).
        rows_served: rows answered 200.
        requests: requests sent.
        errors: failed requests by status (``"503"``, …; ``"transport"``: no answer;
            ``"bad_answer"``: a 200 that is not a prediction of every row).
        label_files: good label files written.
        labels_written: labels in them.
        labels_pending: labels waiting for their delay.
        bad_label_files: fault files written (``--bad-label-files``).
        first_served: per stream position, when its first row was answered 200.
        model_versions: per model version seen in the answers, when it was first seen.
        next_position: the next stream position to be read.
        lag_seconds: how far sending is behind the rate (0 when on time).
        sending_done: no more rows will be sent (batches or stream exhausted).
        done: sending done and every label written (or the run was stopped).
    """

    run: str
    rows_sent: int = 0
    rows_served: int = 0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    label_files: int = 0
    labels_written: int = 0
    labels_pending: int = 0
    bad_label_files: int = 0
    first_served: dict[int, float] = field(default_factory=dict)
    model_versions: dict[int, float] = field(default_factory=dict)
    next_position: int = 0
    lag_seconds: float = 0.0
    sending_done: bool = False
    done: bool = False

    def summary(self) -> str:
        """One line for the console."""
        versions = ", ".join(str(v) for v in sorted(self.model_versions)) or "none yet"
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"traffic {self.run}: {self.rows_served}/{self.rows_sent} rows served in "
            f"{self.requests} requests (errors: {errors}), next position {self.next_position}, "
            f"{self.labels_written} labels in {self.label_files} files "
            f"({self.labels_pending} pending), model versions {versions}, "
            f"lag {self.lag_seconds:.1f} s"
        )


@dataclass
class _Pending:
    """Labels of one answered request, due at ``due`` (monotonic seconds)."""

    due: float
    ids: list[str]
    labels: list[str]


class TrafficSimulator:
    """Posts a stream's rows to the prediction API and writes their labels later.

    Args:
        api_url: the API's base URL (``http://127.0.0.1:8000``).
        source: the stream replayed; its ``schema`` names the features sent and the
            target whose values are the labels.
        labels_dir: the label inbox (created if missing).
        token: bearer token; None sends no ``Authorization`` header.
        start_position: first stream position sent.
        batches: positions sent (from ``start_position``); None: until the stream ends
            or :meth:`stop`.
        max_rows: stop sending after this many rows; None: no limit.
        rows_per_request: 1 posts to ``/predict``, more to ``/predict/batch``.
        rate: rows per second (> 0).
        label_delay: seconds between a row's answer and its label file.
        label_batch_seconds: a label file gathers the labels due within this many
            seconds of the oldest one (fewer, bigger files; each label is written at
            most this much after its delay). 0: one file per answered request.
        label_format: ``csv`` or ``parquet``.
        label_share: fraction of served rows whose label is ever sent (0..1), drawn
            per row with ``seed``.
        client_ids: send ``prediction_id`` ``t<run>-<position>-<row>``; False lets the
            API assign ids (the answers' ids are labelled).
        bad_label_files: also write the three fault files (module docstring).
        run_id: tag of this run in ids and file names; default: 6 random hex digits.
        seed: seed of the ``label_share`` draw.
        timeout: seconds per HTTP request.
        transport: httpx transport (tests: ``httpx.MockTransport``); None: network.

    Raises:
        ValueError: a numeric argument out of range.
    """

    def __init__(
        self,
        api_url: str,
        source: BatchSource,
        labels_dir: Path,
        *,
        token: str | None = None,
        start_position: int = 0,
        batches: int | None = None,
        max_rows: int | None = None,
        rows_per_request: int = 1,
        rate: float = 10.0,
        label_delay: float = 60.0,
        label_batch_seconds: float = 1.0,
        label_format: LabelFormat = "csv",
        label_share: float = 1.0,
        client_ids: bool = True,
        bad_label_files: bool = False,
        run_id: str | None = None,
        seed: int = 0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ):
        checks = {
            "rate must be > 0": rate > 0,
            "rows_per_request must be >= 1": rows_per_request >= 1,
            "label_delay must be >= 0": label_delay >= 0,
            "label_batch_seconds must be >= 0": label_batch_seconds >= 0,
            "label_share must be in [0, 1]": 0 <= label_share <= 1,
            "start_position must be >= 0": start_position >= 0,
            "batches must be >= 1": batches is None or batches >= 1,
            "max_rows must be >= 1": max_rows is None or max_rows >= 1,
            "label_format must be csv or parquet": label_format in ("csv", "parquet"),
        }
        wrong = [message for message, ok in checks.items() if not ok]
        if wrong:
            raise ValueError("; ".join(wrong))
        self.source = source
        self.labels_dir = Path(labels_dir)
        self.start_position = start_position
        self.batches = batches
        self.max_rows = max_rows
        self.rows_per_request = rows_per_request
        self.rate = rate
        self.label_delay = label_delay
        self.label_batch_seconds = label_batch_seconds
        self.label_format: LabelFormat = label_format
        self.label_share = label_share
        self.client_ids = client_ids
        self.bad_label_files = bad_label_files
        self.run_id = run_id or secrets.token_hex(3)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._stats = TrafficStats(run=self.run_id, next_position=start_position)
        self._sent: collections.deque[SentRequest] = collections.deque(maxlen=100_000)
        self._files: list[LabelFile] = []
        self._pending: collections.deque[_Pending] = collections.deque()
        self._rows: Iterator[tuple[int, int, dict[str, Any], str]] = self._stream_rows()
        self._buffered: list[tuple[int, int, dict[str, Any], str]] = []
        self._seq = 0
        self._faults_written = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0: float | None = None

    # --- public API ---------------------------------------------------------------------

    @property
    def stats(self) -> TrafficStats:
        """A copy of the current statistics (safe to read while the run goes on)."""
        with self._lock:
            s = self._stats
            return dataclasses.replace(
                s,
                errors=dict(s.errors),
                first_served=dict(s.first_served),
                model_versions=dict(s.model_versions),
            )

    @property
    def sent_requests(self) -> list[SentRequest]:
        """The requests sent so far (the newest 100,000), oldest first."""
        with self._lock:
            return list(self._sent)

    @property
    def label_files(self) -> list[LabelFile]:
        """The label files written so far (good and fault files), oldest first."""
        with self._lock:
            return list(self._files)

    @property
    def running(self) -> bool:
        """Whether the background thread (:meth:`start`) is still running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> TrafficSimulator:
        """Run in a background thread until done or :meth:`stop`; returns ``self``.

        Raises:
            RuntimeError: already started.
        """
        if self._thread is not None:
            raise RuntimeError("this traffic simulator was already started")
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background run to end by itself; True if it did within ``timeout``."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def request_stop(self) -> None:
        """Ask the run to end soon (within about 0.2 s); returns at once (signal-safe)."""
        self._stop.set()

    def stop(self, flush_labels: bool = False, timeout: float = 30.0) -> TrafficStats:
        """Stop sending; with ``flush_labels``, write every pending label now (ignoring
        its delay). Closes the HTTP client. Returns the final statistics."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if flush_labels:
            self._write_due(float("inf"))
        self._client.close()
        with self._lock:
            self._stats.done = True
            self._stats.labels_pending = sum(len(p.ids) for p in self._pending)
        return self.stats

    def run(self, until: float | Callable[[TrafficStats], bool] | None = None) -> TrafficStats:
        """Run in the calling thread until done (every row sent, every label written),
        :meth:`stop` from another thread, or ``until``: seconds from now, or a predicate
        of the current :attr:`stats` checked about every 0.2 s. Returns the statistics.
        """
        if isinstance(until, int | float):
            deadline = time.monotonic() + float(until)
            self._run(lambda _stats: time.monotonic() >= deadline)
        else:
            self._run(until)
        return self.stats

    def __enter__(self) -> TrafficSimulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- the loop -----------------------------------------------------------------------

    def _run(self, until: Callable[[TrafficStats], bool] | None = None) -> None:
        self.labels_dir.mkdir(parents=True, exist_ok=True)
        self._t0 = time.monotonic()
        sent_rows = 0
        last_check = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            self._write_due(now)
            if until is not None and now - last_check >= _POLL_SECONDS:
                last_check = now
                if until(self.stats):
                    break
            with self._lock:
                sending_done = self._stats.sending_done
            if sending_done and not self._pending:
                break
            next_send = float("inf") if sending_done else self._t0 + sent_rows / self.rate
            next_label = (
                self._pending[0].due + self.label_batch_seconds if self._pending else float("inf")
            )
            if next_send <= now:
                with self._lock:
                    self._stats.lag_seconds = now - next_send
                sent_rows += self._send_next()
                continue
            self._stop.wait(min(next_send, next_label, now + _POLL_SECONDS) - now)
        with self._lock:
            self._stats.labels_pending = sum(len(p.ids) for p in self._pending)
            self._stats.done = True

    def _stream_rows(self) -> Iterator[tuple[int, int, dict[str, Any], str]]:
        """``(position, row, features, label as text)`` of every row to send, in order."""
        schema = self.source.schema
        features = list(schema.features)
        position = self.start_position
        sent = 0
        while self.batches is None or position < self.start_position + self.batches:
            try:
                frame = self.source.batch(position)
            except StreamExhausted:
                return
            with self._lock:
                self._stats.next_position = position + 1
            records = cast(list[dict[str, Any]], frame[features].to_dict(orient="records"))
            labels = frame[schema.target].astype(str).tolist()
            for row, (record, label) in enumerate(zip(records, labels, strict=True)):
                if self.max_rows is not None and sent >= self.max_rows:
                    return
                sent += 1
                yield position, row, record, label
            position += 1

    def _send_next(self) -> int:
        """Send the next request; returns its number of rows (0: nothing left)."""
        chunk = [row for _, row in zip(range(self.rows_per_request), self._rows, strict=False)]
        if not chunk:
            with self._lock:
                self._stats.sending_done = True
            return 0
        if self.client_ids:
            bodies = [
                {**features, "prediction_id": f"t{self.run_id}-{position}-{row}"}
                for position, row, features, _ in chunk
            ]
        else:
            bodies = [features for _, _, features, _ in chunk]
        single = self.rows_per_request == 1
        content = orjson.dumps(bodies[0] if single else {"rows": bodies})
        sent_at = time.time()
        status: int | None = None
        ids: list[str] = []
        version: int | None = None
        try:
            response = self._client.post(
                "/predict" if single else "/predict/batch",
                content=content,
                headers={"Content-Type": "application/json"},
            )
            status = response.status_code
            if status == 200:
                answer = response.json()
                predictions = [answer] if single else answer["predictions"]
                ids = [str(p["prediction_id"]) for p in predictions]
                version = int(answer["model_version"])
                if len(ids) != len(chunk):
                    raise ValueError(f"{len(ids)} predictions for {len(chunk)} rows")
        except httpx.HTTPError:
            status, ids = None, []
        except (ValueError, KeyError, TypeError):  # a 200 that is not a prediction answer
            status, ids = -1, []
        answered_at = time.time()
        rows = tuple((position, row) for position, row, _, _ in chunk)
        with self._lock:
            stats = self._stats
            stats.requests += 1
            stats.rows_sent += len(chunk)
            if not ids:
                key = {None: "transport", -1: "bad_answer"}.get(status, str(status))
                stats.errors[key] = stats.errors.get(key, 0) + 1
            else:
                stats.rows_served += len(chunk)
                if version is not None:
                    stats.model_versions.setdefault(version, answered_at)
                for position in dict.fromkeys(p for p, _ in rows):
                    stats.first_served.setdefault(position, answered_at)
            self._sent.append(SentRequest(sent_at, answered_at, rows, status, version, tuple(ids)))
        if ids:
            keep = self._rng.random(len(ids)) < self.label_share
            labelled = [(i, c[3]) for i, c, k in zip(ids, chunk, keep, strict=True) if k]
            if labelled:
                self._pending.append(
                    _Pending(
                        time.monotonic() + self.label_delay,
                        [i for i, _ in labelled],
                        [label for _, label in labelled],
                    )
                )
                with self._lock:
                    self._stats.labels_pending += len(labelled)
        return len(chunk)

    # --- label files --------------------------------------------------------------------

    def _write_due(self, now: float) -> None:
        """Write one file with every label due, once the oldest is
        ``label_batch_seconds`` overdue (``now`` = inf: everything pending)."""
        if not self._pending or self._pending[0].due + self.label_batch_seconds > now:
            return
        horizon = now if now == float("inf") else max(now, self._pending[0].due)
        ids: list[str] = []
        labels: list[str] = []
        while self._pending and self._pending[0].due <= horizon:
            item = self._pending.popleft()
            ids += item.ids
            labels += item.labels
        self._seq += 1
        frame = pd.DataFrame({"prediction_id": ids, "label": labels}, dtype="string")
        self._write_file(f"labels-{self.run_id}-{self._seq:06d}", frame, "labels")
        with self._lock:
            self._stats.label_files += 1
            self._stats.labels_written += len(ids)
            self._stats.labels_pending -= len(ids)
        if self.bad_label_files and not self._faults_written:
            self._faults_written = True
            self._write_faults(ids[0], labels[0])

    def _write_faults(self, served_id: str, true_label: str) -> None:
        """The three fault files (module docstring), made from a label just written."""
        classes = [str(c) for c in self.source.schema.classes if str(c) != true_label]
        other = classes[0] if classes else f"not-{true_label}"
        faults = {
            "bad-columns": pd.DataFrame({"id": [served_id], "truth": [true_label]}),
            "unknown-id": pd.DataFrame(
                {"prediction_id": [f"t{self.run_id}-unknown-0"], "label": [true_label]}
            ),
            # Same id twice: its true label (already sent: a duplicate), then another one.
            "conflict": pd.DataFrame(
                {"prediction_id": [served_id, served_id], "label": [true_label, other]}
            ),
        }
        for kind, frame in faults.items():
            self._write_file(f"labels-{self.run_id}-{kind}", frame.astype("string"), kind)
            with self._lock:
                self._stats.bad_label_files += 1

    def _write_file(self, stem: str, frame: pd.DataFrame, kind: str) -> Path:
        """Write ``frame`` as ``<stem>.<format>`` atomically (hidden temp file, rename)."""
        path = self.labels_dir / f"{stem}.{self.label_format}"
        tmp = self.labels_dir / f".{path.name}.tmp"
        if self.label_format == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        with self._lock:
            self._files.append(LabelFile(path, time.time(), len(frame), kind))
        return path


# --- command line -------------------------------------------------------------------------


def wait_ready(
    api_url: str,
    token_file: Path | None,
    timeout: float,
    transport: httpx.BaseTransport | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Wait until ``token_file`` exists (when named) and ``GET /ready`` answers 200.

    Raises:
        TimeoutError: not ready within ``timeout`` seconds (the message says what is missing).
    """
    deadline = time.monotonic() + timeout
    next_note = time.monotonic()
    missing = ""
    with httpx.Client(base_url=api_url.rstrip("/"), timeout=5, transport=transport) as client:
        while True:
            if token_file is not None and not token_file.is_file():
                missing = f"token file {token_file} does not exist yet"
            else:
                try:
                    status = client.get("/ready").status_code
                    missing = "" if status == 200 else f"{api_url}/ready answers {status}"
                except httpx.HTTPError as exc:
                    missing = f"{api_url} unreachable ({type(exc).__name__})"
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not ready after {timeout:.0f} s: {missing}")
            if time.monotonic() >= next_note:
                say(f"traffic: waiting: {missing}")
                next_note = time.monotonic() + 30
            time.sleep(1.0)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; defaults that are settings come from ``Settings()``."""
    settings = Settings()
    default_stream = (
        settings.serving_seed_source if settings.data_source == "serving" else settings.data_source
    )
    parser = argparse.ArgumentParser(
        prog="python -m bench.traffic",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
    )
    parser.add_argument("--api-url", default="http://127.0.0.1:8000", help="the API's base URL")
    parser.add_argument("--token-file", type=Path, help="file holding the API token")
    parser.add_argument("--rate", type=float, default=10.0, help="rows per second")
    parser.add_argument(
        "--rows-per-request", type=int, default=1, help="1: POST /predict; more: /predict/batch"
    )
    parser.add_argument(
        "--label-delay",
        type=float,
        default=settings.label_delay.total_seconds(),
        help="seconds between an answer and its label file (default: IAC_LABEL_DELAY)",
    )
    parser.add_argument(
        "--label-batch-seconds",
        type=float,
        default=5.0,
        help="one label file gathers the labels due within this many seconds",
    )
    parser.add_argument(
        "--labels-dir",
        type=Path,
        default=settings.resolved_labels_dir,
        help="label inbox (default: IAC_LABELS_DIR or IAC_DATA_DIR/labels)",
    )
    parser.add_argument("--label-format", choices=("csv", "parquet"), default="csv")
    parser.add_argument(
        "--label-share", type=float, default=1.0, help="fraction of rows ever labelled"
    )
    parser.add_argument(
        "--stream",
        choices=("synthetic", "replay"),
        default=default_stream,
        help="stream replayed, configured by IAC_* (default: IAC_DATA_SOURCE, or "
        "IAC_SERVING_SEED_SOURCE when that is serving)",
    )
    parser.add_argument("--start-position", type=int, default=0, help="first stream position")
    parser.add_argument("--batches", type=int, help="positions to send (default: all)")
    parser.add_argument("--max-rows", type=int, help="stop sending after this many rows")
    parser.add_argument("--server-ids", action="store_true", help="let the API assign ids")
    parser.add_argument(
        "--bad-label-files",
        action="store_true",
        help="also write a file with wrong columns, one with an unknown id, one with a "
        "conflicting duplicate id",
    )
    parser.add_argument(
        "--flush-on-exit", action="store_true", help="on stop, write pending labels at once"
    )
    parser.add_argument(
        "--wait-ready", action="store_true", help="first wait for the token file and /ready"
    )
    parser.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --label-share draw")
    parser.add_argument("--run-id", help="tag of ids and file names (default: random)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, transport: httpx.BaseTransport | None = None) -> int:
    """Run the simulator from the command line; 0 when done or stopped, 1 when the API
    never got ready, 2 on a bad flag or stream setting."""
    args = parse_args(argv)
    settings = Settings()
    try:
        source = build_source(settings.model_copy(update={"data_source": args.stream}))
        if args.wait_ready:
            wait_ready(args.api_url, args.token_file, args.wait_timeout, transport)
        token = args.token_file.read_text().strip() if args.token_file else None
        simulator = TrafficSimulator(
            args.api_url,
            source,
            args.labels_dir,
            token=token,
            start_position=args.start_position,
            batches=args.batches,
            max_rows=args.max_rows,
            rows_per_request=args.rows_per_request,
            rate=args.rate,
            label_delay=args.label_delay,
            label_batch_seconds=args.label_batch_seconds,
            label_format=args.label_format,
            label_share=args.label_share,
            client_ids=not args.server_ids,
            bad_label_files=args.bad_label_files,
            run_id=args.run_id,
            seed=args.seed,
            transport=transport,
        )
    except TimeoutError as exc:
        print(f"traffic: {exc}")
        return 1
    except (SourceConfigError, ValueError, OSError) as exc:
        print(f"traffic: {exc}")
        return 2

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        simulator.request_stop()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(
        f"traffic {simulator.run_id}: {source.name} from position {args.start_position} to "
        f"{args.api_url} at {args.rate:g} rows/s, labels after {args.label_delay:g} s "
        f"in {args.labels_dir}",
        flush=True,
    )
    try:
        simulator.start()
        while not simulator.wait(SUMMARY_SECONDS):
            print(simulator.stats.summary(), flush=True)
    finally:
        final = simulator.stop(flush_labels=args.flush_on_exit)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(final.summary(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
