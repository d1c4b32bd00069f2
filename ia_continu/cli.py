"""``ia-continu``: operator commands that need no server of their own.

ia-continu check      validate IAC_* settings and print them (secrets masked)
ia-continu migrate    upgrade the project database to the newest Alembic revision
ia-continu rollback   point ``champion`` back at ``previous`` in the MLflow registry
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from ia_continu.settings import Settings, get_settings


def settings_or_exit() -> Settings:
    """Settings from the environment, or exit 2 with one line per bad ``IAC_*`` variable."""
    try:
        return get_settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            lines.append(f"  IAC_{field.upper()}: {error['msg']}")
        print("invalid configuration:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ia-continu`` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="ia-continu", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["check", "migrate", "rollback"])
    args = parser.parse_args(argv)
    settings = settings_or_exit()
    if args.command == "check":
        for name, value in settings.model_dump().items():
            print(f"IAC_{name.upper()}={value}")
        return 0
    if args.command == "migrate":
        from ia_continu.storage.schema import get_engine

        get_engine(settings.resolved_database_url)
        print(f"database at Alembic head: {settings.resolved_database_url}")
        return 0
    from ia_continu import registry

    try:
        version = registry.rollback(
            registry.client(settings.mlflow_tracking_uri), settings.registered_model_name
        )
    except LookupError as exc:
        print(f"rollback impossible: {exc}", file=sys.stderr)
        return 1
    print(f"{settings.registered_model_name}: champion is now version {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
