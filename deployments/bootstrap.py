"""Bootstrap a Prefect server for IA Continu, then (optionally) become its worker.

Idempotent: waits for the Prefect and MLflow servers, migrates the project database,
creates the work pool and the retrain global concurrency limit, stores the Discord
webhook as a Secret block when ``IAC_DISCORD_WEBHOOK_URL`` is set, deploys the
``prefect.yaml`` deployments of the pool's type and, with ``--worker``, execs
``prefect worker start``.

    python -m deployments.bootstrap [--worker] [--pool NAME] [--type process|docker]

``--type docker`` deploys the ``*-docker`` deployments: ``prefect deploy`` builds the
flows image (``IAC_IMAGE_NAME``:``IAC_IMAGE_TAG`` from ``IAC_BASE_IMAGE``) on the local
Docker engine, and the database URL, which flow containers need and which holds a
password, is stored as the Secret block ``ia-continu-database-url`` for the worker to
resolve at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from loguru import logger

from ia_continu.cli import settings_or_exit
from ia_continu.settings import get_settings
from ia_continu.storage.schema import get_engine

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATABASE_URL_BLOCK = "ia-continu-database-url"
DOCKER_SUFFIX = "-docker"
# prefect.yaml's build step and job variables read these; a value unset here would be
# templated to an empty string by `prefect deploy`.
DOCKER_DEFAULTS = {
    "IAC_IMAGE_NAME": "ia-continu-flows",
    "IAC_IMAGE_TAG": "local",
    "IAC_BASE_IMAGE": "python:3.11-slim-bookworm",
    "IAC_DOCKER_NETWORK_MODE": "host",
}


def wait_for(url: str, name: str, timeout: float = 120.0) -> None:
    """Poll ``url`` until it answers 2xx.

    Raises:
        SystemExit: with a message naming the server, after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{name} did not answer at {url} within {timeout:.0f} s")


async def ensure_prefect_objects(pool: str, pool_type: str, limit_name: str) -> None:
    """Create the work pool and the global concurrency limit unless they exist."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    async with get_client() as client:
        try:
            await client.create_work_pool(
                WorkPoolCreate(name=pool, type=pool_type, description="IA Continu flows")
            )
            logger.info("created work pool {} ({})", pool, pool_type)
        except ObjectAlreadyExists:
            logger.info("work pool {} exists", pool)
        # Read first: on PostgreSQL a duplicate create is a bare 409, not
        # ObjectAlreadyExists as on SQLite.
        try:
            await client.read_global_concurrency_limit_by_name(limit_name)
            logger.info("global concurrency limit {} exists", limit_name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name, limit=1)  # type: ignore[arg-type]
            )
            logger.info("created global concurrency limit {} (1 slot)", limit_name)


def store_webhook_secret() -> None:
    """Save IAC_DISCORD_WEBHOOK_URL as the configured Secret block (never logged)."""
    settings = get_settings()
    if settings.discord_webhook_url is None:
        logger.info("IAC_DISCORD_WEBHOOK_URL unset: Discord notifications stay off")
        return
    from prefect.blocks.system import Secret

    # Block.save is sync_compatible: it runs synchronously outside an event loop.
    Secret(value=settings.discord_webhook_url.get_secret_value()).save(  # type: ignore[arg-type,unused-coroutine]
        settings.discord_secret_block, overwrite=True
    )
    logger.info("stored the Discord webhook in Secret block {!r}", settings.discord_secret_block)


def _prefect() -> str:
    """The ``prefect`` CLI of this environment (the venv's when not on PATH)."""
    return shutil.which("prefect") or str(Path(sys.executable).parent / "prefect")


def deployment_names(
    pool_type: str, prefect_file: Path = PROJECT_DIR / "prefect.yaml"
) -> list[str]:
    """``flow/deployment`` names in ``prefect_file`` for a pool type.

    The Docker set is the deployments whose name ends in ``-docker``; the process set is
    the rest.

    Raises:
        SystemExit: when the file defines no deployment for ``pool_type``.
    """
    import yaml

    docker = pool_type == "docker"
    names = [
        f"{entry['entrypoint'].rsplit(':', 1)[1]}/{entry['name']}"
        for entry in yaml.safe_load(prefect_file.read_text())["deployments"]
        if entry["name"].endswith(DOCKER_SUFFIX) == docker
    ]
    if not names:
        raise SystemExit(f"{prefect_file} defines no deployment for a {pool_type} pool")
    return names


def deploy(pool: str, pool_type: str, mlflow_tracking_uri: str) -> None:
    """``prefect deploy`` of the pool type's deployments from the project root."""
    env = {
        **os.environ,
        "IAC_PROJECT_DIR": str(PROJECT_DIR),
        "IAC_WORK_POOL": pool,
        "IAC_MLFLOW_TRACKING_URI": mlflow_tracking_uri,
    }
    if pool_type == "docker":
        env = {**DOCKER_DEFAULTS, **{k: v for k, v in env.items() if v}}
    names = [arg for name in deployment_names(pool_type) for arg in ("-n", name)]
    subprocess.run(
        [_prefect(), "--no-prompt", "deploy", *names], cwd=PROJECT_DIR, env=env, check=True
    )


def store_database_url_secret(database_url: str) -> None:
    """Save the project database URL as Secret block ``ia-continu-database-url``.

    Flow containers get it through the Docker deployments' job variables, resolved by
    the worker at run time (the URL holds a password; it is never logged).

    Raises:
        SystemExit: when the URL is SQLite, which containers cannot share safely.
    """
    if database_url.startswith("sqlite"):
        raise SystemExit(
            "IAC_DATABASE_URL must name a database server (postgresql+psycopg://...) for a"
            " Docker work pool: each flow run is a new container"
        )
    from prefect.blocks.system import Secret

    Secret(value=database_url).save(DATABASE_URL_BLOCK, overwrite=True)  # type: ignore[arg-type,unused-coroutine]
    logger.info("stored the database URL in Secret block {!r}", DATABASE_URL_BLOCK)


def ensure_console_token(database_url: str) -> None:
    """Give the console a prediction-API token, written to ``IAC_UI_API_TOKEN_FILE``
    (mode 0600) when that file is named and missing; the token is never printed."""
    path = os.environ.get("IAC_UI_API_TOKEN_FILE")
    if not path or Path(path).exists():
        return
    from ia_continu.tokens import create_token

    engine = get_engine(database_url)
    _, token = create_token(engine, f"console-{secrets.token_hex(3)}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    logger.info("console token created and written to {}", target)


def main(argv: list[str] | None = None) -> None:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=os.environ.get("IAC_WORK_POOL", "ia-continu-process"))
    parser.add_argument(
        "--type", default="process", choices=("process", "docker"), dest="pool_type"
    )
    parser.add_argument("--worker", action="store_true", help="exec a worker afterwards")
    args = parser.parse_args(argv)
    settings = settings_or_exit()
    api_url = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").rstrip("/")
    wait_for(f"{api_url}/health", "Prefect server")
    if settings.mlflow_tracking_uri.startswith("http"):
        wait_for(f"{settings.mlflow_tracking_uri.rstrip('/')}/health", "MLflow server")
    get_engine(settings.resolved_database_url)  # Alembic upgrade head, once, before any flow
    asyncio.run(
        ensure_prefect_objects(args.pool, args.pool_type, settings.retrain_concurrency_limit)
    )
    store_webhook_secret()
    if args.pool_type == "docker":
        store_database_url_secret(settings.resolved_database_url)
    ensure_console_token(settings.resolved_database_url)
    deploy(args.pool, args.pool_type, settings.mlflow_tracking_uri)
    ui = api_url.removesuffix("/api")
    api_port = os.environ.get("IAC_API_PORT", "8000")
    print(
        f"\n  Prefect UI   {ui}\n  MLflow UI    {settings.mlflow_tracking_uri}\n"
        f"  Predict API  http://127.0.0.1:{api_port}/docs"
        f"  (token: .venv/bin/ia-continu token create <name>)\n"
        f"  Console      http://127.0.0.1:{os.environ.get('IAC_UI_PORT', '8501')}\n"
        f"  Deployments  {deployment_names(args.pool_type)[0]} runs every"
        f" {settings.schedule_interval_seconds} s on pool {args.pool}\n",
        flush=True,
    )
    if args.worker:
        prefect = _prefect()
        command = [prefect, "worker", "start", "--pool", args.pool, "--type", args.pool_type]
        if args.pool_type == "docker":
            # prefect-docker is in the image; never pip-install at start (air-gapped).
            command += ["--install-policy", "never"]
        os.execv(prefect, command)


if __name__ == "__main__":
    main()
