"""The scopes a token can carry, and the rule that only admins ever hold `admin`.

- `spaces`: create, use and delete one's own spaces.
- `ssh`: get short-lived SSH certificates for one's own spaces.
- `admin`: manage users and read the audit log; effective only while the user is an admin.

A CLI that asks for nothing gets `DEFAULT`; `admin` is granted only when asked for, and
only to an admin. Because a role can change after a token is issued, `effective()` is
applied again on every request.
"""

from __future__ import annotations

from collections.abc import Iterable

from devspace_server.models import User

SPACES = "spaces"
SSH = "ssh"
ADMIN = "admin"

DESCRIPTIONS = {
    SPACES: "Create, use and delete your spaces",
    SSH: "Get SSH certificates to reach your spaces",
    ADMIN: "Manage users and read the audit log (admins only)",
}
SUPPORTED = tuple(DESCRIPTIONS)
DEFAULT = (SPACES, SSH)


def parse(scope: str | None) -> list[str]:
    """The scopes of a space-separated `scope` string, in canonical order, without repeats.

    Unknown names are kept (so that callers can refuse them). None (the client asked for
    nothing in particular) gives `DEFAULT`; an empty string gives nothing.
    """
    if scope is None:
        return list(DEFAULT)
    names = set(scope.split())
    return sorted(names, key=lambda n: (SUPPORTED.index(n) if n in SUPPORTED else 99, n))


def unknown(names: Iterable[str]) -> list[str]:
    """The names in `names` that are not scopes of this server."""
    return sorted(set(names) - set(SUPPORTED))


def grantable(user: User, names: Iterable[str]) -> list[str]:
    """The subset of `names` that `user` may hold: everything known, `admin` only for admins."""
    return [n for n in names if n in SUPPORTED and (n != ADMIN or user.is_admin)]


def effective(user: User, names: Iterable[str]) -> frozenset[str]:
    """What a token with `names` may do for `user` right now (drops `admin` from non-admins)."""
    return frozenset(grantable(user, names))


def join(names: Iterable[str]) -> str:
    """Scopes as OAuth writes them: space-separated."""
    return " ".join(names)
