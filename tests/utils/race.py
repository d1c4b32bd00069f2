"""Start N processes that migrate the same database at the same instant."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

_CODE = """
import sys, time
from pathlib import Path
from ia_continu.data.storage.engine import get_engine
from ia_continu.data.storage.migrate import migrate
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.001)
migrate(url)
"""


def migrate_concurrently(url: str, workdir: Path, n: int = 4) -> list[tuple[int, str]]:
    """Run ``migrate(url)`` in ``n`` processes released together; (return code, stderr) each."""
    go = workdir / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CODE, url, str(workdir / f"ready-{i}"), str(go)],
            stderr=subprocess.PIPE,
        )
        for i in range(n)
    ]
    deadline = time.monotonic() + 120
    while len(list(workdir.glob("ready-*"))) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    return [(p.wait(timeout=120), p.stderr.read().decode() if p.stderr else "") for p in procs]
