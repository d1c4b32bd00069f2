"""Schema upgrades through Alembic (``alembic upgrade head``), run explicitly.

The schema is upgraded by the processes that own a deployment's start: the bootstrap
(``python -m deployments.bootstrap``), the operator command ``ia-continu migrate`` and
the API's start-up. Everything else (flows, console, CLI reads) gets its engine from
:func:`ia_continu.data.storage.engine.get_engine`, which checks the revision and
refuses, naming the command, a database that is not at :data:`SCHEMA_HEAD`.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text

from ia_continu.data.storage.engine import create, get_engine

if TYPE_CHECKING:
    # Alembic is imported where a schema is upgraded, not by every process that reaches
    # the database (the flows import the storage modules with their module).
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

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
        alembic.util.exc.CommandError: ``revision`` is unknown.
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


def migrate(url: str) -> Engine:
    """Upgrade the database at ``url`` to Alembic head, then return its checked engine.

    Raises:
        sqlalchemy.exc.ArgumentError: ``url`` is not a SQLAlchemy URL.
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    engine = create(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return get_engine(url)
