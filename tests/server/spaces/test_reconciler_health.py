"""`GET /api/v1/reconciler` and a space's `waiting`, from the reconciler's heartbeats."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from devspace_server.context import state
from devspace_server.models import ReconcilerHeartbeat, Space, utcnow

from .helpers import Caller, new_space


def beat(app: Flask, *, contacted_ago: float | None, leader: bool = True) -> None:
    """Write one replica's heartbeat now, with its last contact `contacted_ago` seconds ago."""
    now = utcnow()
    with app.app_context(), state().sessions() as session:
        session.merge(
            ReconcilerHeartbeat(
                identity="replica-1",
                leader=leader,
                started_at=now,
                beat_at=now,
                contacted_at=None
                if contacted_ago is None
                else now - timedelta(seconds=contacted_ago),
                error=None if contacted_ago is None or contacted_ago < 5 else "connection refused",
            )
        )
        session.commit()


def test_without_a_reconciler_spaces_say_so(as_alice: Caller) -> None:
    health = as_alice("GET", "/api/v1/reconciler").get_json()
    assert health["state"] == "no-reconciler"
    assert "devspace-server reconcile" in health["message"]
    created = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()
    assert created["waiting"] == health["message"]


def test_an_unreachable_cluster_is_reported_on_waiting_spaces_only(
    app: Flask, as_alice: Caller, as_admin: Caller
) -> None:
    beat(app, contacted_ago=0)
    health = as_alice("GET", "/api/v1/reconciler").get_json()
    assert (health["state"], health["replicas"]) == ("ok", None)
    as_alice("POST", "/api/v1/spaces", json=new_space("fresh"))
    assert as_alice("GET", "/api/v1/spaces/fresh").get_json()["waiting"] is None
    as_alice("POST", "/api/v1/spaces", json=new_space("settled"))
    with app.app_context(), state().sessions() as session:
        settled = session.query(Space).filter_by(name="settled").one()
        settled.phase, settled.reason, settled.observed_at = "running", "running", utcnow()
        session.commit()

    beat(app, contacted_ago=60)
    health = as_alice("GET", "/api/v1/reconciler").get_json()
    assert health["state"] == "cluster-unreachable"
    assert "The Kubernetes cluster has not been reachable since" in health["message"]
    assert "(connection refused)" in health["message"]
    fresh = as_alice("GET", "/api/v1/spaces/fresh").get_json()
    assert fresh["phase"] == "provisioning"
    assert fresh["reason"] == fresh["waiting"] == health["message"]
    # A space whose last change was applied keeps its status and waits for nothing.
    shown = as_alice("GET", "/api/v1/spaces/settled").get_json()
    assert (shown["phase"], shown["reason"], shown["waiting"]) == ("running", "running", None)
    # Stopping it is a change the cluster has not seen: it waits, and says why.
    stopped = as_alice("PATCH", "/api/v1/spaces/settled", json={"stopped": True}).get_json()
    assert (stopped["phase"], stopped["waiting"]) == ("running", health["message"])

    (replica,) = as_admin("GET", "/api/v1/reconciler").get_json()["replicas"]
    assert (replica["identity"], replica["leader"], replica["error"]) == (
        "replica-1",
        True,
        "connection refused",
    )


def test_the_endpoint_needs_the_spaces_scope(as_user: Caller, alice: object) -> None:
    answer = as_user(alice, "ssh")("GET", "/api/v1/reconciler")
    assert answer.status_code == 403
    assert answer.mimetype == "application/problem+json"
