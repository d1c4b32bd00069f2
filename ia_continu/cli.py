"""``ia-continu``: operator commands that need no server of their own.

ia-continu check      validate IAC_* settings, read the stream's header and first batch,
                      print the settings (secrets and URL passwords masked) and a summary
ia-continu migrate    upgrade the project (and prediction log) database to Alembic head
ia-continu rollback   point ``champion`` back at ``previous`` in the MLflow registry
ia-continu token create NAME [--expires-in-days N] | token list | token revoke NAME
                      bearer tokens of the prediction API (stored hashed)
ia-continu ui-password  hash the console's operator password (IAC_UI_PASSWORD_HASH)
ia-continu labels load FILE | labels status
                      join a CSV/Parquet label file to the served predictions; coverage
                      and labels kept aside
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from ia_continu.data.stream_check import stream_or_exit
from ia_continu.settings import Settings, settings_or_exit

MAX_TOKEN_DAYS = 36_500  # 100 years: beyond, datetime arithmetic overflows soon after


def mask_url(value: str) -> str:
    """``value`` with the password of the URL it holds replaced by ``***``.

    http(s) URLs are parsed by httpx, anything else as a SQLAlchemy URL
    (``postgresql+psycopg://user:***@host/db``); a value neither can parse is returned
    through :func:`ia_continu.logs.redact`. Values without a password come back unchanged.
    """
    import httpx
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from ia_continu.logs import redact

    if value.startswith(("http://", "https://")):
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            return redact(value)
        if not url.password:
            return value
        return str(url.copy_with(username=url.username, password="***"))
    try:
        return make_url(value).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return redact(value)


def _expiry_days(text: str) -> float:
    """argparse type of ``--expires-in-days``: a positive, finite number of days."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 < days <= MAX_TOKEN_DAYS:  # also refuses NaN
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_TOKEN_DAYS} days (got {text}); "
            "leave the option out for a token that never expires"
        )
    return days


def _token_command(args: argparse.Namespace, database_url: str) -> int:
    from ia_continu.auth import tokens
    from ia_continu.data.storage.engine import get_engine

    engine = get_engine(database_url)
    if args.action == "create":
        expires = timedelta(days=args.expires_in_days) if args.expires_in_days is not None else None
        try:
            info, plaintext = tokens.create_token(engine, args.name, expires)
        except ValueError as exc:
            print(f"token not created: {exc}", file=sys.stderr)
            return 1
        expiry = info.expires_at.isoformat(timespec="seconds") if info.expires_at else "never"
        print(f"created token {info.name!r} (id {info.id}, expires {expiry}); shown once:")
        print(plaintext)
        return 0
    if args.action == "list":
        print(f"{'ID':<10}{'NAME':<30}{'STATE':<10}{'CREATED':<27}EXPIRES")
        for info in tokens.list_tokens(engine):
            expiry = info.expires_at.isoformat(timespec="seconds") if info.expires_at else "never"
            created = info.created_at.isoformat(timespec="seconds")
            print(f"{info.id:<10}{info.name:<30}{info.state():<10}{created:<27}{expiry}")
        return 0
    try:
        info = tokens.revoke_token(engine, args.name)
    except LookupError as exc:
        print(f"token not revoked: {exc}", file=sys.stderr)
        return 1
    print(f"revoked token {info.name!r} (id {info.id})")
    return 0


def _ui_password() -> int:
    import getpass

    from ia_continu.auth.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("operator password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        print(f"IAC_UI_PASSWORD_HASH={hash_password(password)}")
    except ValueError as exc:
        print(f"no hash: {exc}", file=sys.stderr)
        return 1
    return 0


def _labels_command(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from ia_continu.data import labels
    from ia_continu.data.storage import served
    from ia_continu.data.storage.engine import get_engine

    if args.action == "load":
        path = Path(args.file)
        try:
            result = labels.load_file(settings, path)
        except labels.LabelFileError as exc:
            print(f"labels not loaded: {exc}", file=sys.stderr)
            return 2
        print(
            f"{path.name}: {result.rows} rows: {result.joined} joined, {result.duplicates} "
            f"duplicates (no change), {result.conflicts} conflicts, {result.unknown} unknown "
            f"ids, {result.invalid} invalid; {result.resolved} earlier unknown ids resolved"
        )
        if result.quarantined:
            print(
                f"{result.quarantined} rows kept aside in quarantined_labels (origin "
                f"'cli:{path.name}'): see `ia-continu labels status`"
            )
        return 0
    engine = get_engine(settings.resolved_database_url)
    counts = served.label_counts(engine)
    share = f" ({counts.labelled / counts.predictions:.1%})" if counts.predictions else ""
    print(
        f"served predictions: {counts.predictions}, labelled {counts.labelled}{share}, "
        f"unlabelled {counts.unlabelled}"
    )
    kept = ", ".join(f"{reason} {n}" for reason, n in counts.quarantined.items())
    print(f"labels kept aside (unresolved): {kept}; unknown ids resolved later: {counts.resolved}")
    for entry in served.quarantined_labels(engine, limit=args.limit):
        print(f"  [{entry.reason}] {entry.origin}: {entry.detail}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ia-continu", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "check", help="validate IAC_* settings and the stream's first batch, print them"
    )
    commands.add_parser("migrate", help="upgrade the project database")
    commands.add_parser("rollback", help="point champion back at previous")
    token = commands.add_parser("token", help="API bearer tokens")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token (printed once)")
    create.add_argument("name")
    create.add_argument(
        "--expires-in-days",
        type=_expiry_days,
        default=None,
        help=f"lifetime in days, more than 0 and at most {MAX_TOKEN_DAYS}; default: never expires",
    )
    actions.add_parser("list", help="list tokens (never their secrets)")
    commands.add_parser(
        "ui-password", help="hash an operator password for IAC_UI_PASSWORD_HASH (read from stdin)"
    )
    revoke = actions.add_parser("revoke", help="revoke a token by name or id")
    revoke.add_argument("name", help="token name or id")
    label_commands = commands.add_parser("labels", help="ground truth of served predictions")
    label_actions = label_commands.add_subparsers(dest="action", required=True)
    load = label_actions.add_parser(
        "load", help="join a CSV or Parquet label file (IAC_LABELS_ID_COLUMN, _LABEL_COLUMN)"
    )
    load.add_argument("file", help="path of the .csv or .parquet file")
    status = label_actions.add_parser(
        "status", help="labelled / unlabelled predictions and the labels kept aside"
    )
    status.add_argument(
        "--limit", type=int, default=20, help="quarantine entries listed (oldest first)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ia-continu`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "ui-password":
        return _ui_password()
    settings = settings_or_exit()
    if args.command == "check":
        summary = stream_or_exit(settings)
        for name, value in settings.model_dump().items():
            shown = mask_url(value) if isinstance(value, str) and "://" in value else value
            print(f"IAC_{name.upper()}={shown}")
        print(summary.line())
        return 0
    if args.command == "migrate":
        from ia_continu.data.storage.migrate import migrate

        migrate(settings.resolved_database_url)
        print(f"database at Alembic head: {mask_url(settings.resolved_database_url)}")
        if settings.prediction_log_database_url:
            migrate(settings.prediction_log_database_url)
            shown = mask_url(settings.prediction_log_database_url)
            print(f"prediction log database at Alembic head: {shown}")
        return 0
    if args.command in ("token", "labels"):
        from ia_continu.data.storage.engine import SchemaNotAtHead

        try:
            if args.command == "token":
                return _token_command(args, settings.resolved_database_url)
            return _labels_command(args, settings)
        except SchemaNotAtHead as exc:
            print(f"ia-continu {args.command}: {exc}", file=sys.stderr)
            return 2
    from ia_continu.loop.cycle import registry_client
    from ia_continu.training import registry

    # Loads `previous` before moving any alias; an unloadable one is refused (a LookupError).
    mlflow_client = registry_client(settings)
    name = settings.registered_model_name
    try:
        version = registry.rollback(mlflow_client, name)
    except LookupError as exc:
        print(f"rollback impossible: {exc}; no alias moved", file=sys.stderr)
        return 1
    previous = registry.get_alias(mlflow_client, name, registry.PREVIOUS)
    after = f"version {previous.version}" if previous else "unset (old champion cannot be loaded)"
    print(f"{name}: champion is now version {version}; previous is {after}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
