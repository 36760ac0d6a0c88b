"""bench/loadgen.py, the api-latency row's load generator: it sends on schedule whatever the
server does (open loop), so a slow server's queue shows in the latencies, and it counts what
failed by kind instead of timing it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

LOADGEN = Path(__file__).resolve().parents[1] / "bench" / "loadgen.py"


class _Handler(BaseHTTPRequestHandler):
    status = 200
    pause = 0.0
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        time.sleep(self.pause)
        self.seen.append(self.headers.get("Authorization"))
        body = b'{"items": []}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


class _OneAtATime(HTTPServer):
    request_queue_size = 64  # the generator's connections wait in the backlog, not in SYN retries


@contextmanager
def _serve(handler: type[_Handler], server: type[HTTPServer]) -> Iterator[int]:
    httpd = server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def _run(port: int, rate: int, seconds: float, token: str = "") -> dict[str, Any]:
    argv = [sys.executable, str(LOADGEN), str(port), "/api/v1/spaces", str(rate), str(seconds)]
    output = subprocess.run(
        argv, env={"BENCH_TOKEN": token}, check=True, capture_output=True, text=True, timeout=60
    ).stdout
    found: dict[str, Any] = json.loads(output)
    return found


@pytest.fixture
def answering() -> Iterator[tuple[int, type[_Handler]]]:
    handler = type("Answering", (_Handler,), {"seen": []})
    with _serve(handler, ThreadingHTTPServer) as port:
        yield port, handler


def test_every_request_is_sent_with_the_token_and_answered(
    answering: tuple[int, type[_Handler]],
) -> None:
    port, handler = answering
    found = _run(port, 40, 0.5, token="dsp_bench")  # noqa: S106 - not a secret
    assert found["sent"] == 20
    assert len(found["latencies"]) == 20
    assert found["failures"] == {}
    assert handler.seen == ["Bearer dsp_bench"] * 20


def test_an_error_status_is_a_failure_not_a_latency() -> None:
    handler = type("Failing", (_Handler,), {"seen": [], "status": 503})
    with _serve(handler, ThreadingHTTPServer) as port:
        found = _run(port, 40, 0.25)
    assert found["failures"] == {"status 503": 10}
    assert found["latencies"] == []


def test_a_server_that_falls_behind_shows_its_queue_in_the_latencies() -> None:
    # One request at a time, 0.2 s each, asked for at 20/s: request n is due at n * 0.05 s
    # but cannot be answered before (n + 1) * 0.2 s. Sent on time, the last of 10 waits for
    # the nine before it; a generator that waited for each answer would show 0.2 s for all.
    handler = type("Slow", (_Handler,), {"seen": [], "pause": 0.2})
    with _serve(handler, _OneAtATime) as port:
        found = _run(port, 20, 0.5)
    assert len(found["latencies"]) == 10
    assert max(found["latencies"]) >= 10 * 0.2 - 9 * 0.05
