"""Liveness and readiness, for Kubernetes probes and for `serve`'s own check.

`/healthz` touches nothing: a worker that answers is alive. `/readyz` asks the database,
on a connection of its own with short timeouts: a probe that hangs as long as a request
would is no use to the kubelet, and a pool exhausted by requests must not make the probe
wait behind them. It also checks that the schema is the one this code needs, so that a
new version is not sent traffic before its migrations have run.
"""

from __future__ import annotations

import functools
from typing import Literal

from flask import Blueprint, current_app
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from devspace_server import context, db
from devspace_server.api.operations import Model, operation
from devspace_server.errors import DatabaseNotMigrated, DatabaseUnavailable

blueprint = Blueprint("health", __name__)
PROBE_TIMEOUT_SECONDS = 2
_PROBE_ENGINE = "devspace.readiness"


class Health(Model):
    """The answer of a passing probe."""

    status: Literal["ok"] = "ok"


@blueprint.get("/healthz")
@operation(summary="Liveness: the process answers", tags=["meta"], response=Health, public=True)
def healthz() -> Health:
    """Always ok while the worker can answer; touches nothing else."""
    return Health()


@blueprint.get("/readyz")
@operation(
    summary="Readiness: the database is reachable and migrated",
    tags=["meta"],
    response=Health,
    errors=[503],
    public=True,
)
def readyz() -> Health:
    """Ok if the database answers within a few seconds and is at this code's migration.

    Raises `DatabaseUnavailable` or `DatabaseNotMigrated` (503) if not.
    """
    check_database(_probe_engine())
    return Health()


def check_database(engine: Engine) -> None:
    """`SELECT 1` and the schema's migration on `engine`.

    Raises `DatabaseUnavailable` if the database cannot be reached, `DatabaseNotMigrated`
    if it is not at the newest migration this code ships.
    """
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = db.current_revision(connection)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot reach the database at {db.describe(url)}: {reason[:300]}"
        ) from exc
    if current != _head():
        state = "is empty" if current is None else f"is at migration {current}"
        raise DatabaseNotMigrated(
            f"the database {state}, this server needs {_head()}: "
            "run `devspace-server migrate` first"
        )


@functools.cache
def _head() -> str:
    # Reading the migration scripts costs milliseconds; they cannot change while we run.
    return db.head_revision()


def probe_engine(url: str) -> Engine:
    """An engine for readiness checks on `url`: for PostgreSQL, a new connection each time
    with a connect timeout and a statement timeout of `PROBE_TIMEOUT_SECONDS`."""
    if make_url(url).get_backend_name() != "postgresql":
        # SQLite is a local file: nothing to time out on, and the app's engine has the
        # settings several processes need to share the file.
        return db.make_engine(url)
    return create_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": PROBE_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={PROBE_TIMEOUT_SECONDS * 1000}",
        },
    )


def _probe_engine() -> Engine:
    engine: Engine | None = current_app.extensions.get(_PROBE_ENGINE)
    if engine is None:
        state = context.state()
        if state.engine.url.get_backend_name() == "postgresql":
            engine = probe_engine(state.engine.url.render_as_string(hide_password=False))
        else:
            engine = state.engine
        current_app.extensions[_PROBE_ENGINE] = engine
    return engine
