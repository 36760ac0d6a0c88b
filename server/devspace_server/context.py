"""What a request handler needs from the app it runs in: its config, its database session.

The session is opened on first use in a request and closed when the request ends (rolled
back if it was not committed). Nothing here outlives a request: per-user state lives in
the database so that every worker and replica answers alike.
"""

from __future__ import annotations

from flask import current_app, g, request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from devspace_server.config import Config

EXTENSION = "devspace"


class AppState:
    """What `create_app` attaches to the Flask app: config, engine, session factory."""

    def __init__(self, config: Config, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self.config = config
        self.engine = engine
        self.sessions = sessions


def state() -> AppState:
    """The current app's `AppState`."""
    found: AppState = current_app.extensions[EXTENSION]
    return found


def config() -> Config:
    """The current app's configuration."""
    return state().config


def db() -> Session:
    """The request's database session, opened on first use."""
    if "db" not in g:
        g.db = state().sessions()
    session: Session = g.db
    return session


def close_db(_exc: BaseException | None = None) -> None:
    """Close the request's session, if one was opened (registered as a teardown)."""
    session: Session | None = g.pop("db", None)
    if session is not None:
        session.close()


def client_ip() -> str:
    """The client's address (behind `proxy_hops` trusted proxies, as ProxyFix resolved it)."""
    return request.remote_addr or "unknown"
