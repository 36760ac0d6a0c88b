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

For the pages in a real browser, against real providers (session fixtures, started on
first use):

- ``live``: devspace over real HTTP at ``live.url`` (``http://localhost:<port>``); serves
  whichever app the test puts in ``live.app``.
- ``provider``: a real OpenID provider (npm's ``oidc-provider``) on 127.0.0.1 with the
  people in ``ACCOUNTS`` (password ``IDP_PASSWORD``) and devspace registered as a client.
- ``github``: ``testbed.github``'s stand-in for GitHub, with ``OCTOCAT``.
- ``browser`` (from tests/conftest.py): a headless Chromium (Debian's, driven by Playwright).

And per test:

- ``page``: a page in a fresh browser context (no cookies), with JavaScript off.
- ``serve``: ``serve(**overrides)`` builds an app with both upstream providers (``NAME``,
  titled ``TITLE``, and ``gh``) and puts it on ``live``; returns the app.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Page
from sqlalchemy import make_url

from devspace_server import accounts, db
from devspace_server.app import create_app
from devspace_server.config import Config, load_config
from devspace_server.context import state
from devspace_server.models import Base, Role, User
from testbed.github import FakeGitHub, GitHubUser
from testbed.oidc import Account, Client, OidcProvider
from testbed.postgres import PostgresServer

from .things import blueprint as things_blueprint

if TYPE_CHECKING:
    from .upstream_pages import LiveServer

SECRET = "test-secret-0123456789-abcdefghijklmnop"  # noqa: S105 - a test key
PASSWORD = "correct horse battery staple"  # noqa: S105 - a test password
# A test key (32 bytes, base64) that seals the sidecars' host keys in the database.
HOST_KEY_ENCRYPTION_KEY = "lgqXgT1C0xPjLJd1ZyvJbNg5w6CfR9w3mF1q2Xw8Vb0="
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
        "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS": HOST_KEY_ENCRYPTION_KEY,
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


NAME = "idp"
TITLE = "Test IdP"
CLIENT_SECRET = "upstream-client-secret-0123456789abcdef"  # noqa: S105 - a test secret
IDP_PASSWORD = "idp password 1"  # noqa: S105 - a test password

ACCOUNTS = {
    a.login: a
    for a in [
        Account("alice", IDP_PASSWORD, "alice@example.com", True, ("devs",)),
        Account("carol", IDP_PASSWORD, "carol@example.com", True, ("devs", "admins")),
        Account("dave", IDP_PASSWORD, "dave@example.org", True),
        # Claims the address of the local account `bob`, without the provider vouching for it.
        Account("mallory", IDP_PASSWORD, "bob@example.com", False, ("devs",)),
        Account("robert", IDP_PASSWORD, "rob@example.com", True),
    ]
}
OCTOCAT = GitHubUser(
    583231,
    "octocat",
    IDP_PASSWORD,
    (("old@example.com", False, True), ("octo@example.com", True, True)),
    ("acme",),
)


@pytest.fixture(scope="session")
def live() -> Iterator[LiveServer]:
    from .upstream_pages import LiveServer  # noqa: PLC0415 - it imports this module

    server = LiveServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def provider(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    callback = f"{live.url}/login/upstream/{NAME}/callback"
    started = time.monotonic()
    idp = OidcProvider.start(
        tmp_path_factory.mktemp("oidc"),
        [Client("devspace", CLIENT_SECRET, (callback,))],
        list(ACCOUNTS.values()),
    )
    print(f"oidc-provider started in {time.monotonic() - started:.2f} s")
    yield idp
    idp.stop()


@pytest.fixture(scope="session")
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub("Iv1.devspace", CLIENT_SECRET, {OCTOCAT.login: OCTOCAT}).start()
    yield fake
    fake.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


Serve = Callable[..., Flask]


@pytest.fixture
def serve(
    settings: dict[str, str],
    live: LiveServer,
    provider: OidcProvider,
    github: FakeGitHub,
    make_app: Callable[[Config], Flask],
) -> Iterator[Serve]:
    """Serve an app on `live` with both providers; keyword arguments override `idp`'s
    settings, `gh_<key>` ones GitHub's."""
    base = settings | {
        "DEVSPACE_PUBLIC_URL": live.url,
        "DEVSPACE_UPSTREAM_PROVIDERS": f"{NAME},gh",
        "DEVSPACE_UPSTREAM_IDP_TITLE": TITLE,
        "DEVSPACE_UPSTREAM_IDP_DISCOVERY_URL": provider.discovery_url,
        "DEVSPACE_UPSTREAM_IDP_CLIENT_ID": "devspace",
        "DEVSPACE_UPSTREAM_IDP_CLIENT_SECRET": CLIENT_SECRET,
        "DEVSPACE_UPSTREAM_IDP_SCOPES": "openid email profile groups",
        "DEVSPACE_UPSTREAM_GH_TYPE": "github",
        "DEVSPACE_UPSTREAM_GH_URL": github.url,
        "DEVSPACE_UPSTREAM_GH_CLIENT_ID": github.client_id,
        "DEVSPACE_UPSTREAM_GH_CLIENT_SECRET": CLIENT_SECRET,
    }

    def serve(**overrides: str) -> Flask:
        extra = {
            f"DEVSPACE_UPSTREAM_{'' if k.startswith('gh_') else 'IDP_'}{k.upper()}": v
            for k, v in overrides.items()
        }
        live.app = make_app(load_config(base | extra))
        return live.app

    yield serve
    live.app = None
