"""The database-backed SpaceStore: what the reconciler reads, and what it writes back."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from flask import Flask

from devspace_server.context import state
from devspace_server.kube.spec import Port, Resources
from devspace_server.models import Space, User
from devspace_server.quotas import QuotaValues
from devspace_server.reconcile.dbstore import DatabaseSpaceStore, follow_changes
from devspace_server.reconcile.status import Phase, Problem, ProblemKind, SpaceStatus

from .helpers import Caller, new_space

CA_KEYS = ("ssh-ed25519 AAAA-test devspace-ca",)


def store_of(app: Flask) -> DatabaseSpaceStore:
    with app.app_context():
        sessions, config = state().sessions, state().config
    return DatabaseSpaceStore(
        sessions,
        configured_quota=QuotaValues(),
        ca_public_keys=lambda: CA_KEYS,
        host_key_sealer=config.host_key_sealer,
    )


def test_live_spaces_become_specs_with_quota_keys_and_principals(
    app: Flask, as_alice: Caller, as_admin: Caller, alice: User
) -> None:
    body = new_space(env={"B": "2", "A": "1"}, ports=[{"name": "web", "port": 8000}])
    created = as_alice("POST", "/api/v1/spaces", json=body).get_json()
    as_admin("PUT", f"/api/v1/admin/users/{alice.id}/quota", json={"requests_cpu": "1500m"})
    store = store_of(app)
    (spec,) = store.desired_spaces()
    assert spec == store.desired_space(created["id"])
    assert (spec.space_id, spec.owner_id, spec.name) == (created["id"], alice.id, "work")
    assert spec.principals == (alice.id,)
    assert spec.ca_public_keys == CA_KEYS
    assert "OPENSSH PRIVATE KEY" in spec.host_private_key
    assert spec.command == ("sleep", "infinity")
    assert spec.env == (("A", "1"), ("B", "2"))
    assert spec.ports == (Port("web", 8000),)
    assert spec.resources == Resources(cpu_request="100m", memory_request="64Mi")
    assert spec.storage == "1Gi"
    assert spec.quota.requests_cpu == "1500m"
    assert spec.quota.requests_memory == "4Gi"
    assert spec.quota.pods == "4"
    assert store.desired_space("0000000000000000") is None


def test_status_is_written_back_and_shown(app: Flask, as_alice: Caller) -> None:
    space_id = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()["id"]
    store = store_of(app)
    problem = Problem(ProblemKind.QUOTA_EXCEEDED, "the pod does not fit the space's quota")
    store.write_status(
        space_id,
        SpaceStatus(
            Phase.ERROR,
            problem.message,
            pod_ip="10.0.0.7",
            quota_used={"pods": "0"},
            quota_hard={"pods": "4"},
            problems=(problem,),
        ),
    )
    shown = as_alice("GET", "/api/v1/spaces/work").get_json()
    assert (shown["phase"], shown["reason"], shown["pod_ip"]) == (
        "error",
        problem.message,
        "10.0.0.7",
    )
    assert shown["problems"] == [{"kind": "quota-exceeded", "message": problem.message}]
    assert shown["quota"] == {"hard": {"pods": "4"}, "used": {"pods": "0"}}
    assert shown["observed_at"] is not None
    store.write_status(space_id, SpaceStatus(Phase.RUNNING, "x" * 5000, ready=True))
    assert len(as_alice("GET", "/api/v1/spaces/work").get_json()["reason"]) == 1024


def test_deleted_spaces_wait_for_finalization(app: Flask, as_alice: Caller) -> None:
    space_id = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()["id"]
    as_alice("DELETE", "/api/v1/spaces/work")
    store = store_of(app)
    assert store.desired_spaces() == []
    assert store.desired_space(space_id) is None
    assert store.deleted_spaces() == [space_id]
    store.write_status(space_id, SpaceStatus(Phase.DELETING, "waiting"))
    store.mark_finalized(space_id)
    assert store.deleted_spaces() == []
    # A late status write cannot bring a finalized space back to life.
    store.write_status(space_id, SpaceStatus(Phase.RUNNING, "running"))
    with app.app_context(), state().sessions() as session:
        row = session.get(Space, space_id)
        assert row is not None
        assert (row.phase, row.finalized_at is not None) == ("deleted", True)


def test_changes_are_found_by_desired_at_not_by_status_writes(app: Flask, as_alice: Caller) -> None:
    store = store_of(app)
    assert store.latest_change() is None
    space_id = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()["id"]
    created_at = store.latest_change()
    assert created_at is not None
    # Nothing changed after the creation; a status write is not a change.
    store.write_status(space_id, SpaceStatus(Phase.RUNNING, "running"))
    changed, cursor = store.changed_since(created_at + timedelta(seconds=10))
    assert changed == []
    assert cursor == created_at + timedelta(seconds=10)
    as_alice("PATCH", "/api/v1/spaces/work", json={"stopped": True})
    changed, later = store.changed_since(created_at)
    assert changed == [space_id]
    assert later > created_at


class RecordingLoop:
    def __init__(self) -> None:
        self.queued: list[str] = []

    def enqueue(self, space_id: str) -> None:
        self.queued.append(space_id)


def test_follow_changes_queues_each_changed_space(app: Flask, as_alice: Caller) -> None:
    old = as_alice("POST", "/api/v1/spaces", json=new_space("old")).get_json()["id"]
    store, loop, stop = store_of(app), RecordingLoop(), threading.Event()
    follower = threading.Thread(
        target=follow_changes, args=(store, loop, stop), kwargs={"poll_seconds": 0.05}
    )
    follower.start()
    try:
        time.sleep(0.2)
        new = as_alice("POST", "/api/v1/spaces", json=new_space("new")).get_json()["id"]
        deadline = time.monotonic() + 5
        while new not in loop.queued and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        follower.join(5)
    assert new in loop.queued
    # `old` changed within the overlap window, so it may be queued again; that is harmless.
    assert set(loop.queued) <= {old, new}
