"""The Docker tests' bounded phases, without Docker: a slow phase passes, a hung one
fails naming itself, and fixtures run outside pytest's per-test timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from pathlib import Path

import pytest

from tests.docker import phases, test_compose_up, test_docker_pool
from tests.docker.phases import ROOT, PhaseError, run_phase
from tests.utils.servers import free_port, wait_healthy, wait_until

PY = sys.executable


@pytest.fixture(autouse=True)
def _own_artifacts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """These phases' logs and timings stay out of the real Docker runs' artifacts."""
    monkeypatch.setattr(phases, "PHASE_LOGS", tmp_path / "phase-logs")
    monkeypatch.setattr(phases, "PHASE_TIMINGS", {})


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie is dead, waiting to be reaped


def test_a_slow_phase_that_keeps_printing_is_never_cut_short(tmp_path: Path) -> None:
    # 3 s in all, longer than the stall bound, but a line every 0.5 s.
    script = "import time\nfor i in range(6):\n    print('step', i, flush=True); time.sleep(0.5)"
    output = run_phase("slow build", [PY, "-c", script], stall=1.5, limit=60)
    assert "step 5" in output
    assert phases.PHASE_TIMINGS["slow build"] >= 2.5
    assert (tmp_path / "phase-logs" / "slow-build.log").read_text() == output


def test_a_silent_hung_phase_fails_naming_itself_and_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import subprocess, time
        child = subprocess.Popen(["sleep", "300"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        print("started", flush=True)
        time.sleep(300)
        """
    )
    started = time.monotonic()
    with pytest.raises(PhaseError) as failed:
        run_phase("hung build", [PY, "-c", script], stall=2, limit=60)
    assert time.monotonic() - started < 30
    message = str(failed.value)
    assert "phase 'hung build' no progress for 2 s (hung?)" in message
    assert "started" in message  # the last output, for the reader
    # The whole process group went, not only the command: nothing hung is left running.
    child = int(pidfile.read_text())
    wait_until(lambda: not _alive(child), f"the hung phase's child {child} to die", 30)


def test_a_phase_that_prints_forever_stops_at_its_limit() -> None:
    script = "import time\nwhile True:\n    print('.', flush=True); time.sleep(0.1)"
    with pytest.raises(PhaseError, match=r"phase 'looping build' still running after its limit"):
        run_phase("looping build", [PY, "-c", script], stall=30, limit=2)


def test_a_failing_phase_names_itself_with_its_exit_code_and_output() -> None:
    script = "import sys\nprint('no space left', flush=True)\nsys.exit(3)"
    with pytest.raises(PhaseError, match=r"(?s)phase 'compose build' exited 3.*no space left"):
        run_phase("compose build", [PY, "-c", script], stall=30, limit=60)


def test_a_changing_progress_probe_counts_as_progress() -> None:
    """`compose up` prints nothing while it waits for health checks: a change in the
    containers' states keeps it alive; the same silent command with no change fails."""
    silent = [PY, "-c", "import time; time.sleep(3)"]
    ticks = count()
    run_phase(
        "compose up (states change)",
        silent,
        stall=1.5,
        limit=60,
        progress=lambda: next(ticks),
        progress_every=0.3,
    )
    with pytest.raises(PhaseError, match=r"(?s)no progress for 2 s.*progress: postgres starting"):
        run_phase(
            "compose up (stuck)",
            silent,
            stall=1.5,
            limit=60,
            progress=lambda: "postgres starting",
            progress_every=0.3,
        )


def test_wait_until_returns_the_value_or_says_what_it_waited_for() -> None:
    values = iter([None, 0, "ready"])
    assert wait_until(lambda: next(values), "x", 10, interval=0.01) == "ready"

    def refused() -> None:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(TimeoutError) as waited:
        wait_until(
            refused,
            "the API's /ready to answer 200",
            0.2,
            interval=0.05,
            describe=lambda: "flow runs: Running: 1",
            ignore=(ConnectionError,),
        )
    message = str(waited.value)
    assert message.startswith("waited 0 s for the API's /ready to answer 200")
    assert "ConnectionRefusedError: connection refused" in message
    assert "flow runs: Running: 1" in message


class _SlowHealth(BaseHTTPRequestHandler):
    """A server that is up but, like one on a loaded machine, takes 3 s to answer."""

    def do_GET(self) -> None:
        time.sleep(3)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_wait_healthy_accepts_a_server_that_answers_slowly(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _SlowHealth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    process = subprocess.Popen(["sleep", "60"])
    log = tmp_path / "server.log"
    log.write_text("listening\n")
    try:
        # Before: each poll gave up after 2 s, so a server answering in 3 s never counted.
        wait_healthy(f"http://127.0.0.1:{server.server_port}/health", process, log, timeout=30)
        process.kill()
        process.wait()
        with pytest.raises(RuntimeError, match=r"(?s)server exited.*listening"):
            wait_healthy(f"http://127.0.0.1:{server.server_port}/health", process, log)
    finally:
        process.kill()
        server.shutdown()
        server.server_close()


def _pytest(tmp_path: Path, marker: str, fixture_s: float, test_s: float) -> str:
    """Run a one-test session under `timeout = 2` whose module fixture takes
    ``fixture_s`` and whose test takes ``test_s``; return its output."""
    (tmp_path / "pytest.ini").write_text("[pytest]\ntimeout = 2\n")
    (tmp_path / "test_build.py").write_text(
        textwrap.dedent(
            f"""
            import time
            import pytest
            from tests.docker.phases import fixtures_outside_test_timeout

            {marker}

            @pytest.fixture(scope="module")
            def image_build():
                time.sleep({fixture_s})
                yield
                time.sleep({fixture_s} / 2)

            def test_with_the_image(image_build):
                time.sleep({test_s})
            """
        )
    )
    done = subprocess.run(
        [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout + done.stderr


def test_fixtures_run_outside_the_per_test_timeout(tmp_path: Path) -> None:
    # Before: the module fixture's build counts against the 2 s per-test timeout.
    assert "Timeout (>2.0s)" in _pytest(tmp_path, "", fixture_s=3, test_s=0)
    # After: the build and its teardown take longer than the test's timeout, and pass ...
    marked = "pytestmark = fixtures_outside_test_timeout(2)"
    assert "1 passed" in _pytest(tmp_path, marked, fixture_s=3, test_s=0)
    # ... while a test function that hangs still fails on it.
    assert "Timeout (>2.0s)" in _pytest(tmp_path, marked, fixture_s=0, test_s=5)


@pytest.mark.parametrize("module", [test_compose_up, test_docker_pool])
def test_the_docker_tests_build_outside_their_timeout(module: object) -> None:
    marks = getattr(module, "pytestmark", [])
    timeouts = [m for m in marks if m.name == "timeout"]
    assert timeouts and timeouts[0].kwargs["func_only"] is True, marks
    # The backstop is above the test's own bounds, which fail first with their message.
    assert timeouts[0].args[0] >= 1800
