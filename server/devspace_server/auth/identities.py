"""Who an upstream sign-in is: from a provider's claims to a devspace `User`.

No Flask here, only the rules, so they are tested without a browser:

- An account is found by its `Identity` (issuer, subject), never by email alone.
- A first sign-in creates a new user, unless the provider is trusted to link by email
  (`link_verified_email`) and the email is verified by the provider *and* belongs to exactly
  one existing user whose own email is verified. An unverified email never links.
- Allow-lists: a verified email at an allowed domain, membership of an allowed group.
- `admin_group`: when set, the provider is the authority on who is an admin among the
  people it signs in: members are promoted, and non-members are demoted, at every sign-in.
  A user whose admin rights were given by hand therefore loses them on signing in through a
  provider with an `admin_group` they are not in; without `admin_group`, roles are never
  touched by sign-in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devspace_server import accounts, audit
from devspace_server.auth.providers import UpstreamProvider
from devspace_server.errors import Conflict
from devspace_server.models import USERNAME_MAX, Identity, Role, User, utcnow


@dataclass(frozen=True)
class UpstreamClaims:
    """What a provider said about the person, after its signatures and state were checked."""

    issuer: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    username: str | None = None
    """A preferred username (GitHub login, OIDC `preferred_username`); a hint only."""
    groups: frozenset[str] = field(default_factory=frozenset)


class Refused(Exception):
    """Sign-in refused. `reason` is a short code for the audit log, `message` for the person."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def check_allowed(provider: UpstreamProvider, claims: UpstreamClaims) -> None:
    """Raise `Refused` unless `claims` pass `provider`'s allow-lists (all that are set)."""
    if provider.allowed_domains:
        domain = (claims.email or "").rpartition("@")[2].lower()
        if not claims.email_verified or domain not in provider.allowed_domains:
            raise Refused(
                "domain-not-allowed",
                f"Only people with a verified email address at "
                f"{', '.join(sorted(provider.allowed_domains))} may sign in with "
                f"{provider.title}. Ask an administrator if you should have access.",
            )
    if provider.allowed_groups and not provider.allowed_groups & claims.groups:
        raise Refused(
            "group-not-allowed",
            f"Your {provider.title} account is not in a group that may use devspace. "
            "Ask an administrator to add you to one.",
        )


def sign_in(
    db: Session, provider: UpstreamProvider, claims: UpstreamClaims, *, ip: str | None = None
) -> User:
    """The user `claims` sign in as, created or linked on first sign-in (flushed, not committed).

    Applies the allow-lists and the admin group; a role the admin group changes is audited
    (from `ip`). Raises `Refused` if the allow-lists refuse the person or the account is
    disabled.
    """
    check_allowed(provider, claims)
    identity = db.scalar(
        select(Identity).where(Identity.issuer == claims.issuer, Identity.subject == claims.subject)
    )
    if identity is not None:
        user = identity.user
    else:
        user = _linked_user(db, provider, claims) or _new_user(db, claims)
        identity = Identity(issuer=claims.issuer, subject=claims.subject, user=user)
        db.add(identity)
    if user.disabled:
        raise Refused("disabled", "This account is disabled. Ask an administrator to enable it.")
    if provider.admin_group is not None:
        role = Role.ADMIN if provider.admin_group in claims.groups else Role.USER
        if role is not user.role:
            audit.record(
                db,
                "user.role_changed",
                actor=None,
                ip=ip,
                target=user.id,
                details={"from": user.role.value, "to": role.value, "by": provider.name},
            )
            user.role = role
    if claims.email and claims.email_verified and user.password_hash is None:
        # Keep an upstream-only account's address current; a local account's stays its own.
        user.email, user.email_verified = claims.email, True
    now = utcnow()
    identity.last_login_at = user.last_login_at = now
    db.flush()
    return user


def _linked_user(db: Session, provider: UpstreamProvider, claims: UpstreamClaims) -> User | None:
    if not (provider.link_verified_email and claims.email and claims.email_verified):
        return None
    candidates = db.scalars(
        select(User).where(
            func.lower(User.email) == claims.email.lower(), User.email_verified.is_(True)
        )
    ).all()
    if len(candidates) != 1:
        return None  # none, or ambiguous: never guess which person this is
    user = candidates[0]
    already = db.scalar(
        select(Identity.id).where(Identity.user_id == user.id, Identity.issuer == claims.issuer)
    )
    # Another subject of the same issuer already owns this account: a different person
    # holding a recycled address.
    return None if already is not None else user


def username_candidates(claims: UpstreamClaims) -> list[str]:
    """Usernames to try for a new account, best first: the hint, the email's local part,
    or `user` when neither gives a valid name."""
    hints = [claims.username or "", (claims.email or "").partition("@")[0]]
    names = []
    for hint in hints:
        name = re.sub(r"[^a-z0-9._-]+", "-", hint.lower()).strip("._-")[: USERNAME_MAX - 4]
        if name and accounts.username_problem(name) is None and name not in names:
            names.append(name)
    return names or ["user"]


def _new_user(db: Session, claims: UpstreamClaims) -> User:
    base = username_candidates(claims)
    tries = base + [f"{base[0]}-{n}" for n in range(2, 1000)]
    taken = set(db.scalars(select(User.username).where(User.username.in_(tries))))
    email = claims.email if claims.email and not accounts.email_problem(claims.email) else None
    for name in tries:
        if name in taken:
            continue
        try:
            return accounts.create_user(
                db,
                username=name,
                role=Role.USER,
                email=email,
                email_verified=bool(email and claims.email_verified),
            )
        except Conflict:
            continue  # taken since we looked; try the next one
    raise Refused("no-username", "No free username is left for this account.")
