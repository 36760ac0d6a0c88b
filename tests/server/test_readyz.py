"""Readiness: the API's `/readyz` (database reachable in time, schema migrated), and the
small probe server a process without a web app (the reconciler) serves."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from devspace_server import metrics
from devspace_server.api.health import PROBE_TIMEOUT_SECONDS
from devspace_server.config import Config
from devspace_server.probe_server import ProbeServer
from testbed.postgres import PostgresServer

from .conftest import _admin, _url

TOKEN = "probe-metrics-token-0123456789abcdefgh"  # noqa: S105 - a test token


def test_readyz_is_ok_on_a_migrated_database(
    config: Config, make_app: Callable[..., Flask]
) -> None:
    response = make_app(config).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.fixture
def unmigrated_url(config: Config, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on the same backend as `config`'s."""
    if config.database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/unmigrated.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"unmigrated_{uuid.uuid4().hex[:12]}"
    _admin(server, f"CREATE DATABASE {name}")
    yield _url(server, name)
    _admin(server, f"DROP DATABASE {name} WITH (FORCE)")


def test_readyz_refuses_traffic_until_the_database_is_migrated(
    config: Config, make_app: Callable[..., Flask], unmigrated_url: str
) -> None:
    client = make_app(replace(config, database_url=unmigrated_url)).test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "urn:devspace:problem:database-not-migrated"
    assert "devspace-server migrate" in body["detail"]


@pytest.fixture
def silent_database() -> Iterator[int]:
    """A port where a TCP connection is accepted (by the kernel) and never answered: what a
    hung database server or a half-dead network path looks like to a client."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.postgres
def test_readyz_gives_up_on_a_database_that_never_answers(
    config: Config, make_app: Callable[..., Flask], silent_database: int
) -> None:
    url = f"postgresql+psycopg://devspace@127.0.0.1:{silent_database}/devspace"
    client = make_app(replace(config, database_url=url)).test_client()
    started = time.monotonic()
    response = client.get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json()["type"] == "urn:devspace:problem:database-unavailable"
    assert elapsed < PROBE_TIMEOUT_SECONDS + 3, f"the probe took {elapsed:.1f} s"


# The probe server.


def fetch(port: int, path: str, token: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - http to us
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def probes() -> Iterator[tuple[ProbeServer, list[str | Exception | None]]]:
    """A probe server whose readiness answer the test sets: None, a reason, or an error."""
    state: list[str | Exception | None] = [None]

    def ready() -> str | None:
        answer = state[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    server = ProbeServer(("127.0.0.1", 0), ready=ready, metrics_token=TOKEN).start()
    yield server, state
    server.stop()


def test_the_probe_server_answers_liveness_and_the_process_readiness(
    probes: tuple[ProbeServer, list[str | Exception | None]],
) -> None:
    server, state = probes
    assert fetch(server.port, "/healthz")[0] == 200
    assert fetch(server.port, "/readyz")[::2] == (200, '{"status": "ok"}')

    state[0] = "leadership not yet known"
    status, content_type, body = fetch(server.port, "/readyz")
    assert (status, content_type) == (503, "application/problem+json")
    assert json.loads(body)["detail"] == "leadership not yet known"

    state[0] = ConnectionRefusedError("the API server")
    status, _, body = fetch(server.port, "/readyz")
    assert status == 503
    assert "ConnectionRefusedError" in json.loads(body)["detail"]
    assert fetch(server.port, "/elsewhere")[0] == 404


def test_the_probe_server_gives_metrics_to_the_token_holder_only(
    probes: tuple[ProbeServer, list[str | Exception | None]],
) -> None:
    server, _ = probes
    metrics.instruments().reconcile_errors.labels("cluster").inc(0)
    assert fetch(server.port, "/metrics")[0] == 401
    assert fetch(server.port, "/metrics", "not-the-token")[0] == 401
    status, content_type, body = fetch(server.port, "/metrics", TOKEN)
    assert status == 200
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(body)}
    assert {"devspace_reconcile_errors", "devspace_reconcile_duration_seconds"} <= names

    closed = ProbeServer(("127.0.0.1", 0), ready=lambda: None, metrics_token=None).start()
    try:
        status, _, body = fetch(closed.port, "/metrics")
        assert status == 503
        assert "DEVSPACE_METRICS_TOKEN" in body
    finally:
        closed.stop()
