"""Engines of the project database: one pooled engine per URL, its schema checked.

Creating an engine never changes the schema: migrations run explicitly
(:mod:`ia_continu.data.storage.migrate`: the bootstrap, ``ia-continu migrate`` and the
API's start-up). :func:`get_engine` refuses a database whose Alembic revision is not the
one this code was written for, with the command that fixes it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, column, create_engine, event, inspect, select, table
from sqlalchemy.engine import make_url

#: The Alembic revision this code expects (``migrate.head_revision()``; a test keeps
#: them equal).
SCHEMA_HEAD = "0004"

#: How long a SQLite writer waits for another's lock before "database is locked" (ms).
SQLITE_BUSY_TIMEOUT_MS = 10_000


class SchemaNotAtHead(RuntimeError):
    """The database's schema is not at :data:`SCHEMA_HEAD` (never migrated, or older)."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets readers (UI, API) run while a flow writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create(url: str) -> Engine:
    """A new engine for ``url``, schema unchecked (migrations and tests use it).

    SQLite files get their parent directory created, WAL mode and a 10 s busy timeout.
    Bound parameters are left out of error messages (``hide_parameters``): a failed
    insert would otherwise print batch rows in the error that reaches logs and Discord.

    Raises:
        sqlalchemy.exc.ArgumentError: ``url`` is not a SQLAlchemy URL.
    """
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, None when it was never migrated.

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        versions = table("alembic_version", column("version_num"))
        return connection.execute(select(versions.c.version_num)).scalar()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """A pooled engine for ``url`` (one per process), its schema at :data:`SCHEMA_HEAD`.

    Raises:
        sqlalchemy.exc.ArgumentError: ``url`` is not a SQLAlchemy URL.
        sqlalchemy.exc.OperationalError: the database cannot be reached.
        SchemaNotAtHead: the schema is not at :data:`SCHEMA_HEAD`; the message names the
            database (password hidden) and ``ia-continu migrate``.
    """
    engine = create(url)
    revision = schema_revision(engine)
    if revision != SCHEMA_HEAD:
        engine.dispose()
        shown = make_url(url).render_as_string(hide_password=True)
        found = f"at revision {revision}" if revision else "not migrated"
        raise SchemaNotAtHead(
            f"database {shown} is {found}; this version needs revision {SCHEMA_HEAD}: run "
            "`ia-continu migrate` (the bootstrap and the API's start-up run it too)"
        )
    return engine
