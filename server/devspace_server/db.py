"""Engines, sessions and migrations.

One engine per app (per gunicorn worker: engines are made after the fork). SQLite gets the
settings that let several worker processes share one file; PostgreSQL gets pre-ping so a
restarted database costs one failed check, not one failed request.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from devspace_server.errors import DatabaseNotMigrated, DatabaseUnavailable

# Any fixed number: every migrating process takes the same PostgreSQL advisory lock, so
# replicas started together migrate one after another instead of racing.
_MIGRATION_LOCK = 0x64657673  # "devs"


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once across worker processes; the busy
    # timeout makes a writer wait for another instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url` (as `config.load_config` normalised it). Does not connect yet."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions on `engine`; objects stay readable after commit (views render after it)."""
    return sessionmaker(engine, expire_on_commit=False)


def ensure_sqlite_directory(url: str) -> None:
    """Create the directory of a SQLite database file (mode 0700) if it is missing.

    Raises `DatabaseUnavailable` if it cannot be created.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        directory = Path(parsed.database).parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"cannot create the database directory {directory}: {exc.strerror}"
            ) from exc


def describe(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _unavailable(url: str, exc: DBAPIError) -> DatabaseUnavailable:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    return DatabaseUnavailable(f"cannot reach the database at {describe(url)}: {reason[:300]}")


@contextlib.contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction (committed on success).

    Raises `DatabaseUnavailable` if the database cannot be reached.
    """
    try:
        with engine.begin() as connection:
            yield connection
    except OperationalError as exc:
        raise _unavailable(engine.url.render_as_string(), exc) from exc


def check_reachable(engine: Engine) -> None:
    """Run `SELECT 1`. Raises `DatabaseUnavailable` if that fails."""
    with connect(engine) as connection:
        connection.execute(text("SELECT 1"))


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", "devspace_server:migrations")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this code ships."""
    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("the package ships no migrations: it is broken")
    return head


def current_revision(connection: Connection) -> str | None:
    """The migration the database is at; None for an empty database."""
    return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to `revision` (the newest by default); a no-op when already there.

    Raises `DatabaseUnavailable` if the database cannot be reached.
    """
    with connect(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        command.upgrade(_alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the database to `revision` (`base` empties it). For tests and rollbacks."""
    with connect(engine) as connection:
        command.downgrade(_alembic_config(connection), revision)


def require_current_schema(engine: Engine) -> None:
    """Raises `DatabaseNotMigrated` unless the database is at the newest migration.

    Also raises `DatabaseUnavailable` if it cannot be reached.
    """
    with connect(engine) as connection:
        current = current_revision(connection)
    if current != head_revision():
        state = "is empty" if current is None else f"is at migration {current}"
        raise DatabaseNotMigrated(
            f"the database {describe(engine.url.render_as_string())} {state}, this server "
            f"needs {head_revision()}: run `devspace-server migrate` first"
        )
