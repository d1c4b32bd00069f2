"""Helpers for compose.yaml tests: a complete .env, and `docker-compose` with it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
REQUIRED = (
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "UPTIME_KUMA_ADMIN_PASSWORD",
    "IAC_UI_PASSWORD_HASH",
    "DOCKER_GID",
)
# `${NAME`, `${NAME:-default}`, `${NAME:?message}`, `${NAME-x}`, `${NAME?x}`
REFERENCE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?P<op>:?[-?])?(?P<rest>[^}]*)\}")


def references(text: str) -> list[re.Match[str]]:
    """Every ``${VAR...}`` interpolation in ``text`` (``$$`` escapes excluded)."""
    return [m for m in REFERENCE.finditer(text) if text[max(m.start() - 1, 0)] != "$"]


def write_env(path: Path, values: dict[str, str]) -> Path:
    """A .env file with ``values`` (one KEY=value per line)."""
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def compose_command(env_file: Path, project: str | None = None) -> tuple[list[str], dict[str, str]]:
    """``docker-compose -f compose.yaml --env-file ENV [-p PROJECT]`` and its environment.

    Variables of the caller's environment win over the env file in Compose, and `make`
    exports some (PREFECT_PORT, MLFLOW_PORT): every variable compose.yaml reads is removed
    from the environment, so the env file alone decides.
    """
    used = {m["name"] for m in references(COMPOSE_FILE.read_text())}
    env = {key: value for key, value in os.environ.items() if key not in used}
    command = ["docker-compose", "-f", str(COMPOSE_FILE), "--env-file", str(env_file)]
    if project:
        command += ["-p", project]
    return command, env


def compose(
    env_file: Path, *args: str, project: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``docker-compose ... ARGS`` (not checked), for short commands (config, logs, exec).

    Long phases (build, up) go through ``tests.docker.phases.run_phase`` instead.

    Raises:
        TimeoutError: The command did not finish within ``timeout`` s (it is killed).
    """
    command, env = compose_command(env_file, project)
    try:
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(
            f"docker-compose {' '.join(args)} did not finish within {timeout:.0f} s"
        ) from None
