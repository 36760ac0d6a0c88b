"""The one place where errors become responses: `application/problem+json` (RFC 9457).

Our own `DevspaceError`s, werkzeug's HTTP errors (404, 405, 413, …), database outages and
anything unexpected all leave through `problem_response`. An unexpected error is logged
with its traceback under the problem's `instance` id and answered without details.
"""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus

from flask import Flask, Response, json, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from devspace_server.errors import DatabaseUnavailable, DevspaceError

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:devspace:problem:"
log = logging.getLogger(__name__)


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    extensions: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> Response:
    """A problem+json response. `slug` None means `about:blank`: the status says it all.

    `instance` identifies this occurrence (a fresh `urn:uuid:` unless given); it is what
    to quote to whoever reads the server's log.
    """
    instance = instance or f"urn:uuid:{uuid.uuid4()}"
    body: dict[str, object] = {
        "type": f"{TYPE_PREFIX}{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **(extensions or {}),
    }
    response = Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE)
    response.headers.update(headers or {})
    return response


def _from_devspace(error: DevspaceError) -> Response:
    return problem_response(
        error.status,
        error.title,
        error.detail,
        slug=error.slug,
        extensions=error.extensions(),
        headers=error.headers(),
    )


_HTTP_DETAILS = {
    404: "There is nothing at this URL. The API's paths are listed at /api/v1/openapi.json.",
    413: "The request body is too large.",
}


def _from_http(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 405:
        allowed = sorted(m for m in getattr(error, "valid_methods", None) or [] if m != "OPTIONS")
        detail = f"{request.method} is not allowed here; use {', '.join(allowed) or 'another'}."
    else:
        detail = _HTTP_DETAILS.get(status, error.description or HTTPStatus(status).phrase)
    headers = {k: v for k, v in error.get_headers() if k.lower() in ("allow", "retry-after")}
    return problem_response(status, HTTPStatus(status).phrase, detail, headers=headers)


def _from_unexpected(error: Exception) -> Response:
    if isinstance(error, OperationalError):
        # Connection refused, server gone, or SQLite locked for too long: the database, not
        # the request, is at fault, and trying again later may work.
        log.warning("database error on %s %s: %s", request.method, request.path, error.orig)
        problem = DatabaseUnavailable("The database is unavailable. Try again shortly.")
        response = _from_devspace(problem)
        response.headers["Retry-After"] = "5"
        return response
    instance = f"urn:uuid:{uuid.uuid4()}"
    log.error(
        "unhandled error on %s %s (instance %s)",
        request.method,
        request.path,
        instance,
        exc_info=error,
    )
    return problem_response(
        500,
        "Internal server error",
        "The server failed to handle this request. The error is logged under this instance.",
        instance=instance,
    )


def handle(error: Exception) -> Response:
    """Turn any exception raised while handling a request into a problem response."""
    if isinstance(error, DevspaceError):
        return _from_devspace(error)
    if isinstance(error, HTTPException):
        return _from_http(error)
    return _from_unexpected(error)


def register(app: Flask) -> None:
    """Route every error of `app` through `handle`."""
    app.register_error_handler(Exception, handle)
