"""Fixtures for the server's tests.

Every fixture that touches a database runs its test twice: on SQLite and on the test
bed's real PostgreSQL (`database_url` is parametrised; the PostgreSQL case is marked
`postgres`). Each test starts from a migrated, empty database: a copy of a SQLite file
migrated once per session, or the session's migrated PostgreSQL database, emptied.

- ``database_url``: a migrated database with no rows in it.
- ``empty_database_url``: the same, but empty (never migrated), for migration tests.
- ``unreachable_sqlite_url``: a SQLite URL that can be neither opened nor created.
- ``settings``: the environment a valid configuration is loaded from (a dict to adjust).
- ``config``: ``load_config(settings)``.
- ``app``: ``create_app(config)``, with a `/api/v1/test-things` blueprint for validation tests.
- ``client``: Flask's test client on ``app``.
- ``make_user``: creates a user with a password (``PASSWORD`` unless given) and returns it.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import make_url

from devspace_server import accounts, db
from devspace_server.app import create_app
from devspace_server.config import Config, load_config
from devspace_server.context import state
from devspace_server.models import Base, Role, User
from testbed.postgres import PostgresServer

from .things import blueprint as things_blueprint

SECRET = "test-secret-0123456789-abcdefghijklmnop"  # noqa: S105 - a test key
PASSWORD = "correct horse battery staple"  # noqa: S105 - a test password
_MIGRATED = "devspace_migrated"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "devspace.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.migrate(engine)
    engine.dispose()  # the last connection to close folds the WAL into the file
    return path


def _admin(server: PostgresServer, sql: str, database: str = "devspace") -> None:
    with psycopg.connect(server.dsn, dbname=database, autocommit=True) as conn:
        conn.execute(sql.encode())


@pytest.fixture(scope="session")
def postgres_migrated(postgres: PostgresServer) -> str:
    _admin(postgres, f"CREATE DATABASE {_MIGRATED}")
    url = _url(postgres, _MIGRATED)
    engine = db.make_engine(url)
    db.migrate(engine)
    engine.dispose()
    return url


def _url(server: PostgresServer, database: str) -> str:
    return make_url(server.url).set(database=database).render_as_string(hide_password=False)


def _database(request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "devspace.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    if migrated:
        # Emptying one migrated database takes 30 ms; cloning a template takes ten times that.
        url: str = request.getfixturevalue("postgres_migrated")
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        _admin(server, f"TRUNCATE {tables} RESTART IDENTITY CASCADE", _MIGRATED)
        yield url
        return
    name = f"test_{uuid.uuid4().hex[:12]}"
    _admin(server, f"CREATE DATABASE {name}")
    yield _url(server, name)
    _admin(server, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from _database(request, tmp_path, migrated=True)


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from _database(request, tmp_path, migrated=False)


@pytest.fixture
def unreachable_sqlite_url(tmp_path: Path) -> str:
    """A SQLite URL whose directory is a file: it can be neither opened nor created."""
    (tmp_path / "not-a-directory").touch()
    return f"sqlite:///{tmp_path}/not-a-directory/devspace.db"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DEVSPACE_DATA_DIR": str(tmp_path / "data"),
        "DEVSPACE_DATABASE_URL": database_url,
        "DEVSPACE_SECRET_KEY": SECRET,
        "DEVSPACE_PUBLIC_URL": "http://localhost:8080",
        "DEVSPACE_LOGIN_MAX_FAILURES_PER_ACCOUNT": "3",
        "DEVSPACE_LOGIN_MAX_FAILURES_PER_IP": "6",
    }


@pytest.fixture
def config(settings: dict[str, str]) -> Config:
    return load_config(settings)


def _build(config: Config) -> Flask:
    app = create_app(config)
    app.register_blueprint(things_blueprint)
    return app


@pytest.fixture
def make_app() -> Iterator[Callable[[Config], Flask]]:
    """Builds apps (as separate gunicorn workers would) and disposes of their engines."""
    made: list[Flask] = []

    def make(config: Config) -> Flask:
        made.append(_build(config))
        return made[-1]

    yield make
    for app in made:
        with app.app_context():
            state().engine.dispose()


@pytest.fixture
def app(config: Config, make_app: Callable[[Config], Flask]) -> Flask:
    return make_app(config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_user(app: Flask) -> Callable[..., User]:
    def make(
        username: str = "alice",
        *,
        password: str = PASSWORD,
        role: Role = Role.USER,
        disabled: bool = False,
    ) -> User:
        with app.app_context():
            with state().sessions() as session:
                user = accounts.create_user(
                    session, username=username, role=role, password=password
                )
                user.disabled = disabled
                session.commit()
            return user

    return make
