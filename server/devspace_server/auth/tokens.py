"""API credentials: minting, hashing, revoking, and checking a request's Bearer token.

A token is a prefix naming its kind plus 256 random bits, e.g. `dsa_…` for an access token,
`dsr_…` for a refresh token and `dsp_…` for a personal token; the prefix lets secret
scanners and people recognise a leaked one. Only the SHA-256 of a token is stored.

`authenticate()` runs on every API request: it checks the token, its expiry and
revocation, and that its user is not disabled (so disabling takes effect at once, not at
expiry), and applies the admin rule of `scopes.effective()` afresh.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from flask import g, request
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from devspace_server import context
from devspace_server.auth import scopes as scope_names
from devspace_server.errors import Forbidden, Unauthorized
from devspace_server.models import ApiToken, TokenKind, User, utcnow

PREFIXES = {TokenKind.ACCESS: "dsa_", TokenKind.REFRESH: "dsr_", TokenKind.PERSONAL: "dsp_"}
REALM = "devspace"


def new_secret(kind: TokenKind) -> str:
    """A fresh random token of `kind`, with its prefix."""
    return PREFIXES[kind] + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a token, code or device code is stored.

    A plain hash suffices: the secrets carry 256 random bits, so there is nothing to guess.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def find(db: Session, secret: str) -> ApiToken | None:
    """The stored token for `secret`, whatever its state; None if there is none."""
    return db.scalar(select(ApiToken).where(ApiToken.token_hash == digest(secret)))


def revoke_family(db: Session, family: str, now: datetime) -> int:
    """Revoke every token of an OAuth sign-in (not committed); returns how many were live."""
    result = db.execute(
        update(ApiToken)
        .where(ApiToken.family == family, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def revoke_user_tokens(db: Session, user_id: str, now: datetime) -> int:
    """Revoke every token of a user (not committed); returns how many were live."""
    result = db.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def is_live(token: ApiToken, now: datetime) -> bool:
    """True if `token` is neither revoked nor expired."""
    return token.revoked_at is None and (token.expires_at is None or token.expires_at > now)


class InvalidToken(Unauthorized):
    """No Bearer token, or one that is unknown, expired, revoked or of a disabled user."""

    def __init__(self, detail: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(detail)
        self.error = error

    def headers(self) -> dict[str, str]:
        # RFC 6750 section 3: no error code when the request carried no token at all.
        value = f'Bearer realm="{REALM}"'
        if self.error:
            value += f', error="{self.error}"'
        return {"WWW-Authenticate": value}


class InsufficientScope(Forbidden):
    """The token is valid but lacks a scope (or its user a role) the operation needs."""

    def __init__(self, detail: str, needed: Iterable[str]) -> None:
        super().__init__(detail)
        self.needed = " ".join(needed)

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer realm="{REALM}", error="insufficient_scope", scope="{self.needed}"'
            )
        }


@dataclass(frozen=True)
class Caller:
    """Who is calling the API: the user, the token they presented, and what it may do."""

    user: User
    token: ApiToken
    scopes: frozenset[str]


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    kind, _, value = header.partition(" ")
    if not header:
        raise InvalidToken(
            "This API needs a Bearer token: sign in with `devspace login`, or send a "
            "personal access token as `Authorization: Bearer <token>`.",
            error=None,
        )
    if kind.lower() != "bearer" or not value.strip():
        raise InvalidToken(
            "Send the token as `Authorization: Bearer <token>`.", error="invalid_request"
        )
    return value.strip()


def authenticate(required: Iterable[str]) -> Caller:
    """Check the request's Bearer token and that it holds every scope in `required`.

    Returns the `Caller` (also kept for `caller()`). Raises `InvalidToken` (401) if the
    token is missing or not usable, `InsufficientScope` (403) if it lacks a scope; `admin`
    counts only while the user is an admin.
    """
    secret = _bearer()
    db, now = context.db(), utcnow()
    row = db.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.token_hash == digest(secret),
            ApiToken.kind.in_((TokenKind.ACCESS, TokenKind.PERSONAL)),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
    ).one_or_none()
    if row is None:
        raise InvalidToken(
            "The token is unknown, expired or revoked: sign in again with `devspace login`."
        )
    token, user = row
    if user.disabled:
        raise InvalidToken("This account is disabled. Ask an administrator to enable it.")
    granted = scope_names.effective(user, token.scopes)
    missing = [s for s in required if s not in granted]
    if missing:
        role = " and an admin account" if scope_names.ADMIN in missing else ""
        raise InsufficientScope(
            f"This needs the scope {', '.join(missing)}{role}; the token has "
            f"{', '.join(sorted(granted)) or 'no usable scope'}.",
            missing,
        )
    # Personal tokens show when they were last used; once a minute is enough for that and
    # spares a write per request.
    if token.kind is TokenKind.PERSONAL and (
        token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60
    ):
        token.last_used_at = now
        db.commit()
    found = Caller(user, token, granted)
    g.api_caller = found
    return found


def caller() -> Caller:
    """The `Caller` that `authenticate()` found for this request.

    Raises `RuntimeError` if the operation did not authenticate (a programming error).
    """
    found: Caller | None = g.get("api_caller")
    if found is None:
        raise RuntimeError("caller() in an operation declared public")
    return found
