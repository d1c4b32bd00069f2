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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from ia_continu.settings import Settings, get_settings, setting_problems

if TYPE_CHECKING:  # pandas and the sources load only for the commands that read a stream
    import pandas as pd

    from ia_continu.sources import BatchSource
    from ia_continu.validation import Verdict

SettingsT = TypeVar("SettingsT", bound=BaseSettings)
MAX_TOKEN_DAYS = 36_500  # 100 years: beyond, datetime arithmetic overflows soon after
#: A cell is quoted in a message only when this short: a longer text may be private.
MAX_QUOTED_CELL = 20
#: Labels the summary line lists; beyond, only their count.
MAX_LISTED_CLASSES = 10
#: A target with a different value on every labelled row of a batch at least this long is
#: an identifier or a measurement, not a label.
MIN_ROWS_FOR_ID_CHECK = 20


def settings_or_exit() -> Settings:
    """Settings from the environment, or exit 2 with one line per bad ``IAC_*`` variable."""
    return validated_or_exit(get_settings, "IAC_")


def validated_or_exit(factory: Callable[[], SettingsT], prefix: str) -> SettingsT:
    """Settings from ``factory``, or exit 2 with one line per bad variable (``prefix`` + name)."""
    try:
        return factory()
    except ValidationError as exc:
        lines = [f"  {line}" for line in setting_problems(exc, prefix)]
        print("invalid configuration:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


@dataclass(frozen=True)
class StreamSummary:
    """What :func:`check_stream` learnt from a source's header and first batch.

    Attributes:
        name: the stream identity (``BatchSource.name``).
        rows: data rows in one pass over the file; None for an unbounded stream.
        batches: batches in one pass; None for an unbounded stream.
        order: how rows follow each other in time (``sorted by 'date'``, ``file order``).
        numeric: numeric feature names, in model input order.
        categorical: categorical feature names.
        target: the label column.
        first_batch_rows: rows of batch 0.
        classes: the labels present in batch 0, sorted as text.
    """

    name: str
    rows: int | None
    batches: int | None
    order: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    target: str
    first_batch_rows: int
    classes: tuple[Any, ...]

    def line(self) -> str:
        """One line: ``stream NAME: R rows, B batches (order), features, classes``."""
        size = f"{self.rows} rows, {self.batches} batches" if self.rows is not None else "unbounded"
        n_features = len(self.numeric) + len(self.categorical)
        listed = ""
        if len(self.classes) <= MAX_LISTED_CLASSES:
            listed = ": " + ", ".join(str(c) for c in self.classes)
        return (
            f"stream {self.name}: {size} ({self.order}); {n_features} features "
            f"({len(self.numeric)} numeric, {len(self.categorical)} categorical); target "
            f"{self.target!r}: {len(self.classes)} classes in the first batch "
            f"({self.first_batch_rows} rows){listed}"
        )


def _quote(value: Any) -> str:
    """A cell for a message: quoted when short and printable, else only its length."""
    text = str(value)
    if len(text) <= MAX_QUOTED_CELL and text.isprintable():
        return repr(text)
    return f"a text of {len(text)} characters"


def _where(source: BatchSource, row: int | None) -> str:
    from ia_continu.sources import ReplaySource

    if row is None:
        return "the first batch"
    if isinstance(source, ReplaySource):
        return f"data row {source.data_row(0, row)} (header not counted)"
    return f"row {row} of the first batch"


def _first_batch_problem(
    source: BatchSource, batch: pd.DataFrame, verdict: Verdict, min_rows: int
) -> str:
    """The first broken rule of an invalid first batch, as ``IAC_X: what, where, what to do``."""
    from ia_continu import validation

    first = verdict.failures[0]
    column, row = first.column, first.row
    alike = sum(1 for f in verdict.failures if (f.column, f.check) == (column, first.check))
    more = f" ({alike - 1} more in the first batch)" if alike > 1 else ""
    where = _where(source, row)
    if first.check == validation.NOT_A_NUMBER and column is not None and row is not None:
        return (
            f"IAC_REPLAY_CATEGORICAL_COLUMNS: column {column!r} is numeric but {where} holds "
            f"{_quote(batch[column].iloc[row])}{more}: declare the column in "
            "IAC_REPLAY_CATEGORICAL_COLUMNS if it is a category, else fix the file"
        )
    if first.check == validation.NOT_FINITE:
        return (
            f"IAC_REPLAY_PATH: column {column!r} is infinite at {where}{more}: numeric "
            "features must be finite (a batch holding one is quarantined)"
        )
    if first.check == validation.MISSING:
        return (
            f"IAC_REPLAY_PATH: column {column!r} is empty at {where}{more}: numeric features "
            "must be present (a batch with a gap is quarantined); fill the gaps or drop the column"
        )
    target = source.schema.target
    if first.check == validation.UNKNOWN_CLASS and row is not None:
        return (
            f"IAC_REPLAY_CLASSES: {where} has the label {_quote(batch[target].iloc[row])}{more}, "
            f"not one of {list(source.schema.classes)}"
        )
    if first.check.startswith(validation.TOO_FEW_ROWS):
        labelled = int(batch[target].notna().sum())
        return (
            f"IAC_MIN_BATCH_ROWS: the first batch has {labelled} labelled rows of {len(batch)} "
            f"(the target {target!r}, IAC_REPLAY_TARGET, is empty on the others), fewer than "
            f"IAC_MIN_BATCH_ROWS={min_rows}"
        )
    return f"IAC_REPLAY_PATH: the first batch is invalid: {verdict.reason}"


def check_stream(settings: Settings) -> StreamSummary:
    """Build the source, read its header and first batch, and check that the loop can use it.

    The first batch must pass ingest validation (:func:`ia_continu.validation.validate_batch`,
    with ``IAC_MIN_BATCH_ROWS``), hold at least two classes (the first model is trained
    on it) and not a different label on every row (an identifier, not a label).

    Returns:
        What was read (:class:`StreamSummary`).

    Raises:
        ia_continu.sources.SourceConfigError: one line that starts with the ``IAC_*``
            variable at fault; it quotes a cell only when short (:data:`MAX_QUOTED_CELL`)
            and places it by data row (1-based, header not counted, file order).
    """
    from ia_continu.sources import ReplaySource, SourceConfigError, build_source
    from ia_continu.validation import validate_batch

    if settings.data_source == "serving":
        # The serving stream starts with the seed source's batches: check the first one.
        from ia_continu.serving_source import seed_source

        source = seed_source(settings)
    else:
        source = build_source(settings)
    batch = source.batch(0)
    schema = source.schema
    verdict = validate_batch(batch, schema, settings.min_batch_rows)
    if not verdict.valid:
        raise SourceConfigError(
            _first_batch_problem(source, batch, verdict, settings.min_batch_rows)
        )
    labels = batch[schema.target].dropna()
    classes = tuple(sorted(labels.unique().tolist(), key=str))
    replay = isinstance(source, ReplaySource)
    if len(classes) < 2:
        setting = "IAC_REPLAY_TARGET / IAC_BATCH_SIZE" if replay else "IAC_BATCH_SIZE"
        raise SourceConfigError(
            f"{setting}: the first batch ({len(labels)} labelled rows) holds a single class "
            f"({_quote(classes[0])}): no first model can be trained on it; check that "
            "IAC_REPLAY_TARGET names the label column, or raise IAC_BATCH_SIZE"
        )
    if len(labels) >= MIN_ROWS_FOR_ID_CHECK and len(classes) == len(labels):
        raise SourceConfigError(
            f"IAC_REPLAY_TARGET: column {schema.target!r} has a different value on each of the "
            f"{len(labels)} labelled rows of the first batch: it is not a class label"
        )
    if isinstance(source, ReplaySource):
        rows: int | None = source.n_rows
        batches: int | None = source.n_batches
        order = f"sorted by {source.time_column!r}" if source.time_column else "file order"
    else:
        rows = batches = None
        order = "generated"
    return StreamSummary(
        name=source.name,
        rows=rows,
        batches=batches,
        order=order,
        numeric=schema.numeric,
        categorical=schema.categorical,
        target=schema.target,
        first_batch_rows=len(batch),
        classes=classes,
    )


def stream_or_exit(settings: Settings) -> StreamSummary:
    """:func:`check_stream`, or exit 2 with its one line (the variable at fault) on stderr."""
    from ia_continu.sources import SourceConfigError

    try:
        return check_stream(settings)
    except SourceConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


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
    from ia_continu import tokens
    from ia_continu.storage.schema import get_engine

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

    from ia_continu.passwords import hash_password

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

    from ia_continu import labels
    from ia_continu.storage import served
    from ia_continu.storage.schema import get_engine

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
        from ia_continu.storage.schema import get_engine

        get_engine(settings.resolved_database_url)
        print(f"database at Alembic head: {mask_url(settings.resolved_database_url)}")
        if settings.prediction_log_database_url:
            get_engine(settings.prediction_log_database_url)
            shown = mask_url(settings.prediction_log_database_url)
            print(f"prediction log database at Alembic head: {shown}")
        return 0
    if args.command == "token":
        return _token_command(args, settings.resolved_database_url)
    if args.command == "labels":
        return _labels_command(args, settings)
    from ia_continu import registry
    from ia_continu.cycle import registry_client

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
