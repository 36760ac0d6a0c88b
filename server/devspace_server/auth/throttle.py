"""Throttling password guesses, with the counters in the database.

Every attempt is a `LoginAttempt` row, so all gunicorn workers and replicas see the same
counts. An account may have `max_failures_per_account` failures in the window (a success
starts its count afresh); an address may have `max_failures_per_ip`, and its count is not
reset by a success, or one's own account would launder guesses at others'.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from devspace_server.config import LoginThrottle
from devspace_server.models import USERNAME_MAX, LoginAttempt


def normalise_username(username: str) -> str:
    """The key a typed username is counted under (and looked up by)."""
    return username.strip().lower()[:USERNAME_MAX]


def _wait(
    db: Session, where: ColumnElement[bool], limit: int, window: timedelta, now: datetime
) -> int:
    """Seconds until fewer than `limit` failures matching `where` remain in the window."""
    recent = db.scalars(
        select(LoginAttempt.created_at)
        .where(where, LoginAttempt.succeeded.is_(False), LoginAttempt.created_at > now - window)
        .order_by(LoginAttempt.created_at.desc())
        .limit(limit)
    ).all()
    if len(recent) < limit:
        return 0
    # The oldest of the last `limit` failures has to leave the window first.
    return max(1, int((recent[-1] + window - now).total_seconds()) + 1)


def seconds_until_allowed(
    db: Session, limits: LoginThrottle, username: str, ip: str, now: datetime
) -> int:
    """0 if a sign-in as `username` from `ip` may be tried now, else seconds to wait."""
    window = timedelta(seconds=limits.window_seconds)
    key = normalise_username(username)
    last_success = db.scalar(
        select(func.max(LoginAttempt.created_at)).where(
            LoginAttempt.username == key, LoginAttempt.succeeded.is_(True)
        )
    )
    account = LoginAttempt.username == key
    if last_success is not None:
        account = account & (LoginAttempt.created_at > last_success)
    return max(
        _wait(db, account, limits.max_failures_per_account, window, now),
        _wait(db, LoginAttempt.ip == ip, limits.max_failures_per_ip, window, now),
    )


def record_attempt(
    db: Session,
    limits: LoginThrottle,
    username: str,
    ip: str,
    *,
    succeeded: bool,
    now: datetime,
) -> None:
    """Record one attempt (not committed) and forget attempts older than the window."""
    db.add(
        LoginAttempt(
            username=normalise_username(username), ip=ip, succeeded=succeeded, created_at=now
        )
    )
    # Nothing older than one window is ever counted; the last success per account only
    # matters inside the window too.
    db.execute(
        delete(LoginAttempt).where(
            LoginAttempt.created_at < now - timedelta(seconds=limits.window_seconds)
        )
    )
