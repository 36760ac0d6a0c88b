"""A small HTTP server for a process that has no web app: the reconciler.

`ProbeServer` answers `/healthz` (ok while the process runs and its `alive` says so),
`/readyz` (asks a function the process supplies: for the reconciler, whether the Kubernetes
API server answers; `reconcile/probe.py`) and `/metrics` (this process's metrics, to a Bearer
token equal to the metrics token; 503 without one, as the API's `/metrics`). It runs in a
daemon thread and serves each request in its own thread, so a slow scrape never holds up
a probe.

    probes = ProbeServer(("0.0.0.0", 8081), ready=lambda: not_ready(heartbeat),
                         metrics_token=token).start()
    ...
    probes.stop()
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devspace_server import metrics

log = logging.getLogger(__name__)
Readiness = Callable[[], str | None]
"""Returns None when ready, else why not (the 503's detail); may raise, which means not."""


class ProbeServer:
    """Serves `/healthz`, `/readyz` and `/metrics` on `bind` until `stop()`."""

    def __init__(
        self,
        bind: tuple[str, int],
        *,
        ready: Readiness,
        metrics_token: str | None,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self._ready = ready
        self._alive = alive
        self._token = metrics_token
        self._server = ThreadingHTTPServer(bind, _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="probe-server", daemon=True
        )

    @property
    def port(self) -> int:
        """The port it listens on (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> ProbeServer:
        """Start serving in a daemon thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str, authorization: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        if path == "/healthz":
            if self._alive():
                return _json(200, {"status": "ok"})
            return _problem(503, "not-alive", "Not alive", "The process has stopped working.")
        if path == "/readyz":
            return self._readiness()
        if path == "/metrics":
            return self._metrics(authorization)
        return _problem(404, None, "Not Found", "Only /healthz, /readyz and /metrics are here.")

    def _readiness(self) -> tuple[int, str, bytes]:
        try:
            why = self._ready()
        except Exception as exc:  # a failing check is an unready process, not a crash
            log.warning("readiness check failed", exc_info=True)
            why = f"the readiness check failed: {type(exc).__name__}"
        if why is None:
            return _json(200, {"status": "ok"})
        return _problem(503, "not-ready", "Not ready", why)

    def _metrics(self, authorization: str) -> tuple[int, str, bytes]:
        if not self._token:
            return _problem(
                503,
                "metrics-not-configured",
                "Metrics not configured",
                "Metrics are off: set DEVSPACE_METRICS_TOKEN (or _FILE).",
            )
        scheme, _, token = authorization.partition(" ")
        # Constant time, so that the token cannot be guessed a byte at a time from timings.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._token.encode()
        ):
            return _problem(
                401,
                "unauthorized",
                "Authentication required",
                "Send the metrics token as `Authorization: Bearer <token>`.",
            )
        body, content_type = metrics.exposition()
        return 200, content_type, body


def _json(
    status: int, body: object, content_type: str = "application/json"
) -> tuple[int, str, bytes]:
    return status, content_type, json.dumps(body).encode()


def _problem(status: int, slug: str | None, title: str, detail: str) -> tuple[int, str, bytes]:
    body = {
        "type": f"urn:devspace:problem:{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    return _json(status, body, "application/problem+json")


def _handler(server: ProbeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = server.answer(
                self.path.split("?", 1)[0], self.headers.get("Authorization", "")
            )
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="devspace-metrics"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Probes come every few seconds: at debug level they do not bury the log.
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
