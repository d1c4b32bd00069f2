"""Engine creation and schema upgrade through Alembic (``alembic upgrade head``)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, text

if TYPE_CHECKING:
    # Alembic is imported where a schema is upgraded or inspected, not by every module
    # that reaches the database through this one (the flows import it with their module).
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` using the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest Alembic revision shipped with the package (what ``upgrade`` reaches)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None  # the package ships at least one revision
    return head


#: How long a SQLite writer waits for another's lock before "database is locked" (ms).
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets readers (UI, API) run while a flow writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """A pooled engine for ``url`` with its schema at Alembic head (upgraded once per process).

    SQLite files get their parent directory created, WAL mode and a 10 s busy timeout.
    Bound parameters are left out of error messages (``hide_parameters``): a failed
    insert would otherwise print batch rows in the error that reaches logs and Discord.

    Raises:
        sqlalchemy.exc.ArgumentError: if ``url`` is not a SQLAlchemy URL.
        sqlalchemy.exc.OperationalError: if the database cannot be reached.
    """
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    upgrade(engine)
    return engine


# Any constant: the advisory lock that serialises migrations across processes.
_PG_MIGRATION_LOCK = 0x1AC0


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run Alembic migrations on ``engine`` up to ``revision``.

    Safe when several processes start together (the API, the bootstrap, a worker): a
    PostgreSQL advisory lock or, for SQLite, a lock file next to the database makes
    them upgrade one after the other; the later ones find the schema at head.
    """
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    serialise = (
        _sqlite_file_lock(engine) if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    )
    with serialise, engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
