"""Start Debian's Prometheus Pushgateway (and Prometheus) on 127.0.0.1 for tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.utils.servers import free_port, spawn, stop, wait_healthy


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} missing (apt-get install {package}; `make test` installs it)")
    return path


@contextmanager
def pushgateway(home: Path) -> Iterator[str]:
    """A Pushgateway on a free port (in-memory store); yields its base URL."""
    binary = _binary("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "pushgateway.log"
    # Debian's build defaults --persistence.file to /var/lib/prometheus/pushgateway.data,
    # shared by every run: empty keeps metrics in memory, as the upstream default.
    proc = spawn([binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="], log)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/-/healthy", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextmanager
def prometheus(home: Path, scrape_targets: dict[str, str], rule_files: list[Path]) -> Iterator[str]:
    """A Prometheus server on a free port scraping ``{job: "host:port"}`` every second
    (``honor_labels`` so pushed job labels survive); yields its base URL."""
    import yaml

    binary = _binary("prometheus", "prometheus")
    home.mkdir(parents=True, exist_ok=True)
    rules = []
    for path in rule_files:
        target = home / path.name
        target.write_text(path.read_text())
        rules.append(path.name)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rules,
        "scrape_configs": [
            {"job_name": job, "honor_labels": True, "static_configs": [{"targets": [target]}]}
            for job, target in scrape_targets.items()
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = home / "prometheus.log"
    proc = spawn(
        [
            binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/-/ready", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
