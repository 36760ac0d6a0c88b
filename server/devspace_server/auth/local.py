"""Local accounts: checking a password, and the sign-in and sign-out pages.

The pages are plain HTML forms that work without JavaScript. Every outcome of a sign-in
(success, wrong password, unknown name, disabled account, throttled) is audited, and every
attempt is counted for throttling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from devspace_server import audit, context
from devspace_server.auth import csrf, sessions, throttle
from devspace_server.auth.passwords import hash_password, needs_rehash, verify_password
from devspace_server.models import User, utcnow

blueprint = Blueprint("local", __name__)


@dataclass(frozen=True)
class SignInResult:
    """What a password check found: the user if it succeeded, else why not."""

    user: User | None
    reason: str | None
    """None on success; else `unknown-user`, `bad-password` or `disabled`."""


def check_password(db: Session, username: str, password: str) -> SignInResult:
    """Check `password` for the local account `username` (case-insensitive).

    Unknown names cost as much time as known ones. A disabled account is reported as such
    only when the password was right, so this never tells a guesser more than a user.
    """
    user = db.scalar(select(User).where(User.username == throttle.normalise_username(username)))
    if not verify_password(user.password_hash if user else None, password):
        return SignInResult(None, "bad-password" if user else "unknown-user")
    if user is None or user.password_hash is None:  # verify_password said yes: cannot be
        return SignInResult(None, "bad-password")
    if user.disabled:
        return SignInResult(None, "disabled")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return SignInResult(user, None)


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this server, else `/`: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return "/"
    return target


def _page(error: str | None, status: int, username: str = "", next_url: str = "/") -> Response:
    html = render_template(
        "login.html",
        error=error,
        username=username,
        next_url=next_url,
        csrf_field=csrf.FIELD,
        csrf_token=csrf.token(),
    )
    return Response(html, status=status, mimetype="text/html")


@blueprint.get("/login")
def login_form() -> BaseResponse:
    """The sign-in page (or straight on, if this browser is already signed in)."""
    next_url = safe_next(request.args.get("next"))
    if sessions.current_user() is not None:
        return redirect(next_url, 303)
    return _page(None, 200, next_url=next_url)


@blueprint.post("/login")
def login() -> BaseResponse:
    """Check the posted form and sign in, or show the form again saying what went wrong."""
    next_url = safe_next(request.form.get("next"))
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    if not csrf.is_valid():
        return _page("This form expired or came from another site. Please try again.", 400)
    if not username or not password:
        return _page("Enter your username and password.", 400, username, next_url)

    db, cfg, ip, now = context.db(), context.config(), context.client_ip(), utcnow()
    # As typed but bounded: the audit log must not grow by whatever a client posts.
    typed = throttle.normalise_username(username)
    wait = throttle.seconds_until_allowed(db, cfg.login_throttle, username, ip, now)
    if wait:
        audit.record(db, "login.throttled", actor=None, ip=ip, details={"username": typed})
        db.commit()
        minutes = math.ceil(wait / 60)
        response = _page(
            "Too many failed sign-ins for this account or from your network. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
            429,
            username,
            next_url,
        )
        response.headers["Retry-After"] = str(wait)
        return response

    result = check_password(db, username, password)
    throttle.record_attempt(
        db, cfg.login_throttle, username, ip, succeeded=result.user is not None, now=now
    )
    if result.user is None:
        audit.record(
            db,
            "login.failed",
            actor=None,
            ip=ip,
            details={"username": typed, "reason": result.reason},
        )
        db.commit()
        if result.reason == "disabled":
            message = "This account is disabled. Ask an administrator to enable it."
            return _page(message, 403, username, next_url)
        return _page("Wrong username or password.", 401, username, next_url)

    result.user.last_login_at = now
    audit.record(db, "login.succeeded", actor=result.user, ip=ip, target=result.user.id)
    sessions.start(result.user)
    db.commit()
    return redirect(next_url, 303)


@blueprint.post("/logout")
def logout() -> BaseResponse:
    """Sign this browser out (the form must carry its CSRF token) and go to the sign-in page."""
    if not csrf.is_valid():
        return _page("This form expired or came from another site. Please try again.", 400)
    user = sessions.current_user()
    if user is not None:
        audit.record(context.db(), "logout", actor=user, ip=context.client_ip(), target=user.id)
    sessions.end()
    context.db().commit()
    return redirect(url_for("local.login_form"), 303)
