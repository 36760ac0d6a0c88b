"""Signed-in browsers.

The session cookie (signed by Flask with the secret key) carries a random token; the
database holds its SHA-256 in a `WebSession` row. Signing out deletes the row, so a copied
cookie stops working at once, and so does every session of a user who is disabled.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import g, request, session
from sqlalchemy import delete, select

from devspace_server import context
from devspace_server.models import User, WebSession, utcnow

_KEY = "sid"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(user: User) -> None:
    """Sign `user` in on this browser: a new session row and a fresh cookie (not committed).

    Whatever the cookie held before is dropped, so a session id planted before sign-in
    (session fixation) is worth nothing after it.
    """
    db, now = context.db(), utcnow()
    db.execute(
        delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at <= now)
    )
    token = secrets.token_urlsafe(32)
    db.add(
        WebSession(
            token_hash=_hash(token),
            user_id=user.id,
            expires_at=now + timedelta(seconds=context.config().session_lifetime_seconds),
            ip=context.client_ip(),
            user_agent=(request.user_agent.string or None) and request.user_agent.string[:255],
        )
    )
    session.clear()
    session.permanent = True
    session[_KEY] = token
    g.current_user = user


def current_user() -> User | None:
    """The signed-in user of this request, or None (no session, expired, or user disabled)."""
    if "current_user" in g:
        cached: User | None = g.current_user
        return cached
    user = None
    token = session.get(_KEY)
    if isinstance(token, str):
        user = context.db().scalar(
            select(User)
            .join(WebSession, WebSession.user_id == User.id)
            .where(
                WebSession.token_hash == _hash(token),
                WebSession.expires_at > utcnow(),
                User.disabled.is_(False),
            )
        )
    g.current_user = user
    return user


def end() -> None:
    """Sign this browser out: delete its session row (not committed) and clear the cookie."""
    token = session.get(_KEY)
    if isinstance(token, str):
        context.db().execute(delete(WebSession).where(WebSession.token_hash == _hash(token)))
    session.clear()
    g.current_user = None
