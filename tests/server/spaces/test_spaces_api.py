"""The spaces API: create, list, show, change, delete; validation, quota, and who sees what."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from flask import Flask
from sqlalchemy import select

from devspace_server.ca import fingerprint
from devspace_server.context import state
from devspace_server.models import AuditEvent, Space, User

from ..oauth_flows import bearer, make_token
from .helpers import Caller, errors_of, new_space


def stored(app: Flask, space_id: str) -> Space:
    with app.app_context(), state().sessions() as session:
        space = session.get(Space, space_id)
        assert space is not None
        return space


def test_a_space_is_created_shown_and_listed(app: Flask, as_alice: Caller, alice: User) -> None:
    created = as_alice("POST", "/api/v1/spaces", json=new_space(env={"EDITOR": "vi"}))
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert re.fullmatch(r"[0-9a-f]{16}", body["id"])
    assert body["namespace"] == f"ds-{body['id']}"
    assert (body["name"], body["owner"], body["owner_id"]) == ("work", "alice", alice.id)
    assert body["phase"] == "provisioning"
    # No reconciler has written a heartbeat in this database: the space says so.
    assert body["reason"].startswith("No reconciler has reported yet")
    assert body["waiting"] == body["reason"]
    assert body["pod_ip"] is None
    assert body["storage"] == "1Gi"
    assert body["env"] == {"EDITOR": "vi"}
    assert body["resources"]["cpu_request"] == "100m"
    # The published host key is the public half of the key the sidecar gets, and its
    # fingerprint is what ssh prints: what the CLI pins.
    public = load_ssh_public_key(body["host_key"]["public_key"].encode())
    assert body["host_key"]["fingerprint"] == fingerprint(public)  # type: ignore[arg-type]
    assert "PRIVATE" not in created.get_data(as_text=True)
    row = stored(app, body["id"])
    # Sealed at rest (tests/server/spaces/test_host_key_sealing.py has the rest).
    assert row.host_private_key.startswith("sealed:v1:")

    shown = as_alice("GET", "/api/v1/spaces/work").get_json()
    assert shown == body
    listed = as_alice("GET", "/api/v1/spaces").get_json()
    assert [s["name"] for s in listed["items"]] == ["work"]


def test_the_workspace_size_defaults_to_the_configured_one(as_alice: Caller) -> None:
    body = new_space()
    del body["storage"]
    assert as_alice("POST", "/api/v1/spaces", json=body).get_json()["storage"] == "10Gi"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "The name is empty"),
        ("a" * 41, "is 41 characters long"),
        ("Work", "has upper-case letters: use 'work'"),
        ("my_space", "characters not allowed ('_')"),
        ("-work", "must start and end with a letter or a digit"),
        ("work-", "must start and end with a letter or a digit"),
        ("wörk", "characters not allowed ('ö')"),
    ],
)
def test_bad_names_are_refused_saying_what_is_wrong(as_alice: Caller, name: str, says: str) -> None:
    errors = errors_of(as_alice("POST", "/api/v1/spaces", json=new_space(name)))
    assert says in errors["name"]


@pytest.mark.parametrize(
    ("field", "value", "where", "says"),
    [
        ("resources", {"cpu_request": "-1"}, "resources.cpu_request", "is negative"),
        ("resources", {"memory_limit": "10Qi"}, "resources.memory_limit", "unknown unit 'Qi'"),
        ("resources", {"cpu_limit": "1e309"}, "resources.cpu_limit", "exponent beyond"),
        ("resources", {"memory_request": "abc"}, "resources.memory_request", "not a quantity"),
        ("resources", {"cpu_request": ""}, "resources.cpu_request", "is empty"),
        ("storage", "lots", "storage", "not a quantity"),
        ("image", "my image", "image", "without spaces"),
        ("env", {"1X": "y"}, "env", "'1X' is not valid"),
        ("ports", [{"name": "ssh", "port": 2222}], "ports.0.port", "the SSH sidecar's"),
        ("ports", [{"name": "a", "port": 80}, {"name": "a", "port": 81}], "ports", "own name"),
        ("command", ["a\x00b"], "command.0", "match pattern"),
        ("image", "python\x00", "image", "without spaces"),
        ("ports", [{"name": "Web!", "port": 80}], "ports.0.name", "match pattern"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(
    as_alice: Caller, field: str, value: Any, where: str, says: str
) -> None:
    errors = errors_of(as_alice("POST", "/api/v1/spaces", json=new_space(**{field: value})))
    assert says in errors[where], errors


def test_a_request_above_its_limit_is_refused(as_alice: Caller) -> None:
    body = new_space(resources={"cpu_request": "3"})
    errors = errors_of(as_alice("POST", "/api/v1/spaces", json=body))
    assert "more than the limit of 2" in errors["resources.cpu_request"]


def test_a_taken_name_is_a_conflict_but_another_users_name_is_not(
    as_alice: Caller, as_bob: Caller
) -> None:
    assert as_alice("POST", "/api/v1/spaces", json=new_space()).status_code == 201
    again = as_alice("POST", "/api/v1/spaces", json=new_space())
    assert again.status_code == 409
    assert "already have a space named 'work'" in again.get_json()["detail"]
    assert as_bob("POST", "/api/v1/spaces", json=new_space()).status_code == 201


def test_resources_beyond_the_quota_are_refused_naming_the_limit(as_alice: Caller) -> None:
    body = new_space(resources={"memory_request": "5Gi", "memory_limit": "6Gi"})
    refused = as_alice("POST", "/api/v1/spaces", json=body)
    assert refused.status_code == 409
    problem = refused.get_json()
    assert problem["limit"] == "requests.memory"
    assert "needs 5152Mi of requests.memory" in problem["detail"]
    assert "allows 4Gi per space" in problem["detail"]
    storage = as_alice("POST", "/api/v1/spaces", json=new_space(storage="50Gi"))
    assert storage.get_json()["limit"] == "requests.storage"


def test_the_number_of_spaces_is_capped(as_alice: Caller) -> None:
    for n in range(3):
        assert as_alice("POST", "/api/v1/spaces", json=new_space(f"s{n}")).status_code == 201
    refused = as_alice("POST", "/api/v1/spaces", json=new_space("s3"))
    assert refused.status_code == 409
    assert refused.get_json()["limit"] == "spaces"
    assert "You have 3 spaces and your quota allows 3" in refused.get_json()["detail"]


def test_stop_start_and_changes(app: Flask, as_alice: Caller) -> None:
    space_id = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()["id"]
    first = stored(app, space_id).desired_at
    stopped = as_alice("PATCH", "/api/v1/spaces/work", json={"stopped": True}).get_json()
    assert stopped["stopped"] is True
    assert stored(app, space_id).desired_at > first
    changed = as_alice(
        "PATCH",
        "/api/v1/spaces/work",
        json={"stopped": False, "image": "python:3.13", "resources": {"cpu_limit": "1"}},
    ).get_json()
    assert (changed["stopped"], changed["image"]) == (False, "python:3.13")
    assert changed["resources"] == {
        "cpu_request": None,
        "memory_request": None,
        "cpu_limit": "1",
        "memory_limit": None,
    }
    too_much = as_alice("PATCH", "/api/v1/spaces/work", json={"resources": {"cpu_limit": "8"}})
    assert too_much.status_code == 409
    assert too_much.get_json()["limit"] == "limits.cpu"
    assert errors_of(as_alice("PATCH", "/api/v1/spaces/work", json={"image": ""}))["image"]
    with app.app_context(), state().sessions() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target == space_id).order_by(AuditEvent.id)
        ).all()
    assert actions == ["space.created", "space.stopped", "space.changed"]


def test_deleting_frees_the_name_and_never_reuses_the_id(app: Flask, as_alice: Caller) -> None:
    old = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()
    deleted = as_alice("DELETE", "/api/v1/spaces/work")
    assert deleted.status_code == 202
    assert deleted.get_json()["phase"] == "deleting"
    assert as_alice("GET", "/api/v1/spaces/work").status_code == 404
    assert as_alice("GET", "/api/v1/spaces").get_json()["items"] == []
    new = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()
    assert new["id"] != old["id"]
    row = stored(app, old["id"])
    assert row.deleted_at is not None
    assert row.finalized_at is None


def test_another_users_space_is_not_found(as_alice: Caller, as_bob: Caller, alice: User) -> None:
    as_alice("POST", "/api/v1/spaces", json=new_space())
    for method, body in (("GET", None), ("PATCH", {"stopped": True}), ("DELETE", None)):
        for path in ("/api/v1/spaces/work", f"/api/v1/spaces/work?owner={alice.id}"):
            response = as_bob(method, path, json=body)
            assert response.status_code == 404, (method, path)
            assert response.mimetype == "application/problem+json"
    assert as_bob("GET", "/api/v1/spaces").get_json()["items"] == []
    assert as_bob("GET", "/api/v1/spaces?owner=alice").status_code == 404
    assert as_alice("GET", "/api/v1/spaces/work").status_code == 200


def test_an_admin_sees_and_manages_everyones_spaces(
    as_alice: Caller, as_bob: Caller, as_admin: Caller, as_user: Any, root: User
) -> None:
    alice_id = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()["owner_id"]
    as_bob("POST", "/api/v1/spaces", json=new_space())
    everyone = as_admin("GET", "/api/v1/spaces").get_json()["items"]
    assert [(s["owner"], s["name"]) for s in everyone] == [("alice", "work"), ("bob", "work")]
    only_bob = as_admin("GET", "/api/v1/spaces?owner=bob").get_json()["items"]
    assert [s["owner"] for s in only_bob] == ["bob"]
    assert as_admin("GET", f"/api/v1/spaces/work?owner={alice_id}").get_json()["owner"] == "alice"
    stopped = as_admin("PATCH", "/api/v1/spaces/work?owner=alice", json={"stopped": True})
    assert stopped.get_json()["stopped"] is True
    assert as_admin("GET", "/api/v1/spaces/work").status_code == 404  # root has none
    assert as_admin("DELETE", "/api/v1/spaces/work?owner=bob").status_code == 202
    # Without the admin scope, an admin is a user like any other.
    as_root_user = as_user(root, "spaces")
    assert as_root_user("GET", "/api/v1/spaces").get_json()["items"] == []
    assert as_root_user("GET", "/api/v1/spaces/work?owner=alice").status_code == 404


def test_spaces_need_the_spaces_scope(as_user: Any, alice: User) -> None:
    ssh_only = as_user(alice, "ssh")
    assert ssh_only("GET", "/api/v1/spaces").status_code == 403
    assert ssh_only("POST", "/api/v1/spaces", json=new_space()).status_code == 403


def test_concurrent_creations_of_one_name_make_one_space(app: Flask, alice: User) -> None:
    token = make_token(app, alice, "spaces")
    statuses: list[int] = []
    start = threading.Barrier(6)

    def create() -> None:
        web = app.test_client()
        start.wait()
        response = web.post("/api/v1/spaces", headers=bearer(token), json=new_space("same"))
        statuses.append(response.status_code)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [201, 409, 409, 409, 409, 409]
