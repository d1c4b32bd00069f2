"""Bounded phases for the Docker tests: a slow machine makes a phase slower, a hung phase
fails with a message naming it.

Image builds and ``compose up`` take minutes on a cold, loaded machine (measured on this
project's 2-core machine at load 10: stand-in images 93 s, ``compose build`` 155 s,
``up`` 184 s). pytest-timeout's per-test timeout wraps fixtures too, so those phases run
in fixtures *outside* it (:data:`FIXTURES_OUTSIDE_TEST_TIMEOUT`), each under its own
bounds:

- a *stall* bound: the phase fails when it shows no progress (no output line, no change
  in what ``progress`` reports) for that long; a slow but working build keeps printing
  and is never cut short by it;
- a *limit*: a hard cap on the whole phase, several times its cold-machine duration, so
  a phase that loops while printing still ends.

Each phase's output goes to ``test-artifacts/docker-phases/<phase>.log`` and its
duration to :data:`PHASE_TIMINGS` (written to ``test-artifacts/docker-timings.json`` at
the end of the session).
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PHASE_LOGS = ARTIFACTS / "docker-phases"
TIMINGS_FILE = ARTIFACTS / "docker-timings.json"
# Seconds per phase name, in the order the phases ran (this session).
PHASE_TIMINGS: dict[str, float] = {}


def fixtures_outside_test_timeout(test_timeout: float) -> pytest.MarkDecorator:
    """A pytest-timeout marker whose timeout covers the test function only.

    Fixture setup and teardown (image builds, ``compose up``, ``compose down``) then run
    under their own phase bounds instead of sharing the per-test budget.

    Args:
        test_timeout: Seconds for the test function itself: a backstop above the sum of
            its own waits' bounds, so that those fail first, with their own message.
    """
    return pytest.mark.timeout(test_timeout, func_only=True)


class PhaseError(AssertionError):
    """A phase of a Docker test failed, hung or ran past its limit (the message says which)."""


def run_phase(
    name: str,
    args: Sequence[str],
    *,
    stall: float,
    limit: float,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    progress: Callable[[], object] | None = None,
    progress_every: float = 5.0,
) -> str:
    """Run ``args`` as the phase ``name``; return its output (stdout and stderr merged).

    Args:
        name: The phase, as the failure message and the timings name it ("compose build").
        args: The command.
        stall: Seconds without progress after which the phase counts as hung. Progress
            is an output line, or a change in what ``progress`` returns.
        limit: Seconds the whole phase may take, however much it progresses.
        env: The command's environment (default: this process's).
        cwd: Its working directory.
        progress: Optional probe polled every ``progress_every`` s (e.g. the containers'
            states during ``compose up``, which prints nothing while it waits for health).
        progress_every: Seconds between ``progress`` polls.

    Raises:
        PhaseError: The command exited non-zero, made no progress for ``stall`` s, or
            ran past ``limit`` s. The message names the phase, says which, and ends with
            the last output lines and the ``progress`` state. The command's process group
            is killed first, so nothing of a hung phase is left running.
    """
    PHASE_LOGS.mkdir(parents=True, exist_ok=True)
    log_path = PHASE_LOGS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.log"
    tail: collections.deque[str] = collections.deque(maxlen=60)
    last_output = [time.monotonic()]
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            cwd=cwd,
            start_new_session=True,  # killpg reaches everything it started
        )
        reader = threading.Thread(
            target=_pump, args=(proc, log, tail, last_output), name=f"phase:{name}", daemon=True
        )
        reader.start()
        state = progress() if progress else None
        last_poll = time.monotonic()
        failure = None
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if progress and now - last_poll >= progress_every:
                    last_poll = now
                    current = progress()
                    if current != state:
                        state, last_output[0] = current, now
                if now - started > limit:
                    failure = f"still running after its limit of {limit:.0f} s"
                elif now - last_output[0] > stall:
                    failure = f"no progress for {stall:.0f} s (hung?) after {now - started:.0f} s"
                if failure:
                    break
                time.sleep(0.2)
        finally:
            # A failed bound, Ctrl-C or a failing probe: the command's own session would
            # otherwise outlive the test.
            if proc.poll() is None:
                _kill_group(proc)
        reader.join(timeout=10)
    elapsed = round(time.monotonic() - started, 1)
    PHASE_TIMINGS[name] = elapsed
    output = "".join(tail)
    if failure is None and proc.returncode != 0:
        failure = f"exited {proc.returncode} after {elapsed:.0f} s"
    if failure:
        detail = f"\nprogress: {state}" if progress else ""
        raise PhaseError(
            f"phase '{name}' {failure}: {' '.join(args)}\n"
            f"(full output: {log_path}){detail}\nlast output:\n{output[-4000:]}"
        )
    return log_path.read_text()


def _pump(
    proc: subprocess.Popen[str],
    log: TextIO,
    tail: collections.deque[str],
    last_output: list[float],
) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        tail.append(line)
        last_output[0] = time.monotonic()


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the phase's process group, then SIGKILL whatever is left of it after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue


def remove_containers(*filters: Sequence[str]) -> list[str]:
    """Force-remove (with anonymous volumes) every container matching one of ``filters``.

    Each filter is a list of ``docker ps --filter`` values, ANDed (e.g. ``["label=a=b",
    "ancestor=img"]``). Teardown uses it after ``compose down`` for what that leaves
    behind: flow-run containers the worker started (not part of the Compose project) and
    a project whose ``down`` timed out. Bounded; never raises.

    Returns:
        The ids removed, or an empty list (also when docker itself did not answer).
    """
    ids: set[str] = set()
    try:
        for values in filters:
            args = ["docker", "ps", "-aq"]
            for value in values:
                args += ["--filter", value]
            found = subprocess.run(args, capture_output=True, text=True, timeout=60)
            ids.update(found.stdout.split())
        if ids:
            subprocess.run(
                ["docker", "rm", "-f", "-v", *sorted(ids)], capture_output=True, timeout=180
            )
    except subprocess.TimeoutExpired:
        return []
    return sorted(ids)
