"""infra/scripts/apt-get.sh: waits while another package manager holds apt's lock (as on
a fresh machine running unattended-upgrades), fails at once on any other error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APT_GET = ROOT / "infra/scripts/apt-get.sh"
LOCKED = (
    "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 6791 (apt-get)\n"
    "E: Unable to lock directory /var/lib/apt/lists/"
)


def _fake_apt_get(tmp_path: Path, failures: int, message: str) -> dict[str, str]:
    """A PATH whose `apt-get` fails ``failures`` times with ``message``, then succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "apt-get"
    fake.write_text(
        f"""#!/usr/bin/env bash
echo "$*" >> {calls}
if [ "$(wc -l < {calls})" -le {failures} ]; then
  printf '%s\\n' "{message}" >&2
  exit 100
fi
echo "installed"
"""
    )
    fake.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "IAC_APT_LOCK_POLL": "0.1",
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(APT_GET), "install", "-y", "postgresql"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_held_lock_is_waited_for(tmp_path: Path) -> None:
    done = _run(_fake_apt_get(tmp_path, 2, LOCKED))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "installed"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 3
    # apt also waits for the dpkg frontend lock itself.
    assert all(c == "-o DPkg::Lock::Timeout=60 install -y postgresql" for c in calls)
    assert "held by process 6791" in done.stderr


def test_a_lock_held_past_the_bound_fails(tmp_path: Path) -> None:
    env = {**_fake_apt_get(tmp_path, 10_000, LOCKED), "IAC_APT_LOCK_WAIT": "1"}
    done = _run(env)
    assert done.returncode == 100
    assert "Could not get lock" in done.stderr


def test_any_other_error_fails_at_once(tmp_path: Path) -> None:
    done = _run(_fake_apt_get(tmp_path, 1, "E: Unable to locate package postgresql"))
    assert done.returncode == 100
    assert "Unable to locate package" in done.stderr
    assert len((tmp_path / "calls").read_text().splitlines()) == 1
