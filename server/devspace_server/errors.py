"""The server's one error root and its family.

Everything the server means to tell a person about derives from `DevspaceError`. The HTTP
layer turns these into `application/problem+json` in one place (`problems.py`); the command
line prints their message as one line (`main.py`). Neither knows about the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


class DevspaceError(Exception):
    """A failure a person can act on; `str(error)` is the message to show them.

    Subclasses set `status` (the HTTP status when it reaches a response), `slug` (the
    problem type, `urn:devspace:problem:<slug>`) and `title` (a short summary that does not
    change between occurrences).
    """

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def extensions(self) -> dict[str, object]:
        """Extra problem members for this error (RFC 9457 section 3.2); none by default."""
        return {}

    def headers(self) -> dict[str, str]:
        """Extra response headers for this error; none by default."""
        return {}


class ConfigError(DevspaceError):
    """The configuration is missing a setting or holds an unsafe one; names each setting."""

    slug = "configuration"
    title = "Invalid configuration"

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class DatabaseUnavailable(DevspaceError):
    """The database cannot be reached or refused the connection."""

    status = 503
    slug = "database-unavailable"
    title = "Database unavailable"


class DatabaseNotMigrated(DevspaceError):
    """The database schema is older than this server (or missing)."""

    status = 503
    slug = "database-not-migrated"
    title = "Database not migrated"


class BadRequest(DevspaceError):
    """The request cannot be understood as sent."""

    status = 400
    slug = "bad-request"
    title = "Bad request"


class MalformedJson(BadRequest):
    """The body claims to be JSON but does not parse."""

    slug = "malformed-json"
    title = "Malformed JSON body"


class UnsupportedMediaType(DevspaceError):
    """The body is not in a media type this endpoint accepts."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


@dataclass(frozen=True)
class InvalidField:
    """One field that failed validation: where it is and what to do about it."""

    field: str
    """Dotted location, e.g. `email` or `items.0.name`; empty for the body as a whole."""
    pointer: str
    """The same location as a JSON Pointer fragment (`#/items/0/name`), as RFC 9457 shows."""
    detail: str


class ValidationFailed(DevspaceError):
    """One or more fields of the request are invalid; `errors` lists each of them."""

    status = 422
    slug = "validation-error"
    title = "Invalid request"

    def __init__(self, errors: Sequence[InvalidField], where: str = "request body") -> None:
        names = ", ".join(e.field or "(the whole)" for e in errors)
        super().__init__(f"The {where} has invalid fields: {names}.")
        self.errors = list(errors)

    def extensions(self) -> dict[str, object]:
        return {
            "errors": [
                {"field": e.field, "pointer": e.pointer, "detail": e.detail} for e in self.errors
            ]
        }


class Unauthorized(DevspaceError):
    """The request carries no valid credentials."""

    status = 401
    slug = "unauthorized"
    title = "Authentication required"


class Forbidden(DevspaceError):
    """The caller is known but may not do this."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(DevspaceError):
    """The named resource does not exist (or the caller may not know that it does)."""

    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(DevspaceError):
    """The request conflicts with the current state, e.g. a name already taken."""

    status = 409
    slug = "conflict"
    title = "Conflict"


class TooManyRequests(DevspaceError):
    """A rate limit holds; `retry_after` says in how many seconds to try again."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
