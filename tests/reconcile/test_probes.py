"""The reconciler's `/healthz` and `/readyz` (`reconcile --probes`), over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from devspace_server.models import utcnow
from devspace_server.probe_server import ProbeServer
from devspace_server.reconcile.heartbeat import UNREACHABLE_AFTER, Heartbeat
from devspace_server.reconcile.probe import not_ready


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> Any:
        return self.now


@pytest.fixture
def probes() -> Iterator[tuple[str, Heartbeat, Clock, list[bool]]]:
    clock, leading, alive = Clock(), [False], [True]
    # Never written here: the probes read only its in-memory contact time.
    beat = Heartbeat(None, "replica", leading=lambda: leading[0], clock=clock)  # type: ignore[arg-type]
    server = ProbeServer(
        ("127.0.0.1", 0), ready=lambda: not_ready(beat), alive=lambda: alive[0], metrics_token=None
    ).start()
    yield f"http://127.0.0.1:{server.port}", beat, clock, alive
    server.stop()


def get(url: str) -> tuple[int, str, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
            return answer.status, answer.headers["Content-Type"], json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.load(error)


def test_ready_only_while_the_api_server_answers_leader_or_not(
    probes: tuple[str, Heartbeat, Clock, list[bool]],
) -> None:
    url, beat, clock, _ = probes
    assert get(f"{url}/healthz")[0] == 200
    status, kind, body = get(f"{url}/readyz")
    assert (status, kind) == (503, "application/problem+json")
    assert body["detail"] == "the Kubernetes API server has not been reached yet"

    beat.contact(True, None)  # a follower that reaches the API server is ready to take over
    assert get(f"{url}/readyz")[0] == 200

    clock.now += UNREACHABLE_AFTER + timedelta(seconds=1)
    status, _, body = get(f"{url}/readyz")
    assert status == 503
    assert "has not answered since" in body["detail"]
    assert get(f"{url}/nothing")[0] == 404


def test_not_alive_once_the_heartbeat_stops(
    probes: tuple[str, Heartbeat, Clock, list[bool]],
) -> None:
    url, _, _, alive = probes
    alive[0] = False
    status, kind, _ = get(f"{url}/healthz")
    assert (status, kind) == (503, "application/problem+json")
