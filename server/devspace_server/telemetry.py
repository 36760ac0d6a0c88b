"""Per request: an id, one access-log line, the request metrics; and `/metrics` itself.

The request id comes from the `X-Request-Id` header when a proxy or client sent a sane one
(so a line here can be matched with the proxy's), else it is made here; it is sent back on
the response and is on every log line written while the request is handled.

The access line names the route (the Flask rule) and the path, never the query string:
OAuth codes and device codes travel in query strings, and must not reach a log. Probes and
scrapes that pass are logged at debug level.

`/metrics` is not public: it answers only a Bearer token equal to `DEVSPACE_METRICS_TOKEN`
(Prometheus' `authorization` setting, or a ServiceMonitor's `bearerTokenSecret`), and 503
while no token is configured. It is not part of the API (absent from the OpenAPI document).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import time
import uuid

from flask import Blueprint, Flask, Response, g, request
from sqlalchemy import func, select

from devspace_server import context, metrics
from devspace_server.errors import DevspaceError, Unauthorized
from devspace_server.logs import ACCESS_LOGGER, FIELDS
from devspace_server.models import Space

HEADER = "X-Request-Id"
# What we accept from outside: enough for UUIDs and the ids proxies make, nothing that
# could break a log line or a header.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger(ACCESS_LOGGER)
_ROUTINE = frozenset({"/healthz", "/readyz", "/metrics"})
blueprint = Blueprint("metrics", __name__)


class MetricsNotConfigured(DevspaceError):
    """No metrics token is configured, so `/metrics` answers nobody."""

    status = 503
    slug = "metrics-not-configured"
    title = "Metrics not configured"


class MetricsUnauthorized(Unauthorized):
    """The scraper did not present the metrics token."""

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="devspace-metrics"'}


def init_app(app: Flask) -> None:
    """Give every request of `app` an id, an access-log line and its metrics; serve
    `/metrics`."""
    app.before_request(_start)
    app.after_request(_finish)
    app.register_blueprint(blueprint)


def _start() -> None:
    g.request_started = time.perf_counter()
    sent = request.headers.get(HEADER, "")
    g.request_id = sent if _SANE_ID.fullmatch(sent) else uuid.uuid4().hex


def _finish(response: Response) -> Response:
    started: float | None = g.get("request_started")
    seconds = time.perf_counter() - started if started is not None else 0.0
    route = request.url_rule.rule if request.url_rule is not None else None
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[HEADER] = request_id
    metrics.observe_request(request.method, route, response.status_code, seconds)
    # Probes and scrapes come every few seconds from every kubelet and Prometheus: while
    # they pass, they would bury the requests people make.
    quiet = route in _ROUTINE and response.status_code < 400
    access_log.log(
        logging.DEBUG if quiet else logging.INFO,
        "%s %s %d",
        request.method,
        route or metrics.UNMATCHED_ROUTE,
        response.status_code,
        extra={
            FIELDS: {
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 1),
                "user_id": _user_id(),
                "ip": context.client_ip(),
            }
        },
    )
    return response


def _user_id() -> str | None:
    """Whoever this request turned out to be: the API caller or the signed-in browser."""
    caller = g.get("api_caller")
    if caller is not None:
        return str(caller.user.id)
    user = g.get("current_user")
    return str(user.id) if user is not None else None


def _check_scraper() -> None:
    expected = context.config().metrics_token
    if not expected:
        raise MetricsNotConfigured(
            "Metrics are off: set DEVSPACE_METRICS_TOKEN (or _FILE) and give Prometheus the "
            "same token as a Bearer token."
        )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # Constant time, so that the token cannot be guessed a byte at a time from timings.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise MetricsUnauthorized("Send the metrics token as `Authorization: Bearer <token>`.")


def spaces_by_phase() -> dict[str, int]:
    """How many spaces (not deleted) are in each phase, from the request's database session."""
    rows = context.db().execute(
        select(Space.phase, func.count()).where(Space.deleted_at.is_(None)).group_by(Space.phase)
    )
    return {phase: int(count) for phase, count in rows}


def _counted_spaces() -> dict[str, int]:
    try:
        return spaces_by_phase()
    except Exception:
        # The session may be left mid-transaction; the request's teardown closes it.
        with contextlib.suppress(Exception):
            context.db().rollback()
        logging.getLogger(__name__).warning("metrics: cannot count spaces", exc_info=True)
        raise


@blueprint.get("/metrics")
def scrape() -> Response:
    """The Prometheus exposition, for the holder of the metrics token.

    Raises `MetricsNotConfigured` (503) without a token configured, `MetricsUnauthorized`
    (401) for a wrong or missing one.
    """
    _check_scraper()
    body, content_type = metrics.exposition([metrics.SpacesByPhase(_counted_spaces)])
    return Response(body, content_type=content_type)
