"""Quotas: the three layers, the admin endpoints, the caller's own view, usage, auditing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from devspace_server.config import Config, load_config
from devspace_server.context import state
from devspace_server.errors import ConfigError
from devspace_server.models import AuditEvent, Role, Space, User

from ..oauth_flows import bearer, make_token
from .helpers import Caller, errors_of, new_space


def observe(app: Flask, name: str, owner: User, used: dict[str, str]) -> None:
    """Play the reconciler: record a ResourceQuota's usage for a space."""
    with app.app_context(), state().sessions() as session:
        session.execute(
            update(Space)
            .where(Space.name == name, Space.owner_id == owner.id)
            .values(quota_used=used, quota_hard={"requests.cpu": "2"}, phase="running")
        )
        session.commit()


def test_a_user_sees_their_quota_and_usage(app: Flask, as_alice: Caller, alice: User) -> None:
    mine = as_alice("GET", "/api/v1/quota").get_json()
    assert mine["override"] == dict.fromkeys(mine["override"])
    assert mine["effective"]["spaces"] == 3
    assert mine["effective"]["requests_memory"] == "4Gi"
    assert mine["usage"] == {"spaces": 0, "used": {}}
    as_alice("POST", "/api/v1/spaces", json=new_space("a"))
    as_alice("POST", "/api/v1/spaces", json=new_space("b"))
    observe(app, "a", alice, {"requests.cpu": "110m", "requests.memory": "96Mi", "pods": "1"})
    observe(app, "b", alice, {"requests.cpu": "1", "requests.memory": "1Gi", "pods": "1"})
    usage = as_alice("GET", "/api/v1/quota").get_json()["usage"]
    assert usage == {
        "spaces": 2,
        "used": {"pods": "2", "requests.cpu": "1110m", "requests.memory": "1120Mi"},
    }


def test_an_override_applies_to_one_user_and_is_audited(
    app: Flask, as_admin: Caller, as_alice: Caller, as_bob: Caller, alice: User
) -> None:
    as_alice("POST", "/api/v1/spaces", json=new_space())
    before = as_alice("GET", "/api/v1/spaces/work").get_json()
    with app.app_context(), state().sessions() as session:
        stamp = session.get(Space, before["id"]).desired_at  # type: ignore[union-attr]
    put = as_admin(
        "PUT", f"/api/v1/admin/users/{alice.id}/quota", json={"spaces": 1, "limits_cpu": "1"}
    )
    assert put.status_code == 200, put.get_json()
    body = put.get_json()
    assert body["override"]["spaces"] == 1
    assert body["effective"]["limits_cpu"] == "1"
    assert body["effective"]["requests_memory"] == "4Gi"
    assert as_admin("GET", f"/api/v1/admin/users/{alice.id}/quota").get_json() == body
    assert as_alice("GET", "/api/v1/quota").get_json()["effective"]["spaces"] == 1
    # The change reaches the reconciler through the space's desired_at.
    with app.app_context(), state().sessions() as session:
        assert session.get(Space, before["id"]).desired_at > stamp  # type: ignore[union-attr]
        event = session.query(AuditEvent).filter_by(action="quota.changed").one()
        assert event.target == alice.id
        assert event.details["to"]["spaces"] == 1
    refused = as_alice("POST", "/api/v1/spaces", json=new_space("second"))
    assert refused.get_json()["limit"] == "spaces"
    assert refused.get_json()["detail"] == (
        "You have 1 space and your quota allows 1: delete one, or ask an admin to raise your quota."
    )
    assert as_bob("POST", "/api/v1/spaces", json=new_space("second")).status_code == 201
    # An empty object removes every override.
    cleared = as_admin("PUT", f"/api/v1/admin/users/{alice.id}/quota", json={})
    assert cleared.get_json()["effective"]["spaces"] == 3


def test_a_quota_of_no_spaces_says_so_without_asking_to_delete_one(
    as_admin: Caller, as_alice: Caller, alice: User
) -> None:
    as_admin("PUT", f"/api/v1/admin/users/{alice.id}/quota", json={"spaces": 0})
    refused = as_alice("POST", "/api/v1/spaces", json=new_space())
    assert refused.status_code == 409
    assert refused.get_json()["detail"] == (
        "You have no spaces and your quota allows 0: ask an admin to raise your quota."
    )


def test_quota_values_are_validated(as_admin: Caller, alice: User) -> None:
    path = f"/api/v1/admin/users/{alice.id}/quota"
    errors = errors_of(
        as_admin("PUT", path, json={"requests_cpu": "-1", "limits_memory": "1e309", "pods": -1})
    )
    assert "is negative" in errors["requests_cpu"]
    assert "exponent beyond" in errors["limits_memory"]
    assert "greater than or equal to 0" in errors["pods"]
    assert "Unknown field" in errors_of(as_admin("PUT", path, json={"gpus": 1}))["gpus"]


def test_quota_endpoints_are_for_admins(
    as_alice: Caller, as_admin: Caller, as_user: Any, root: User, alice: User
) -> None:
    for method, path in (
        ("GET", f"/api/v1/admin/users/{alice.id}/quota"),
        ("PUT", f"/api/v1/admin/users/{alice.id}/quota"),
        ("GET", "/api/v1/admin/quota-defaults"),
        ("PUT", "/api/v1/admin/quota-defaults"),
        ("GET", "/api/v1/admin/usage"),
    ):
        assert as_alice(method, path, json={}).status_code == 403, path
        assert as_user(root, "spaces")(method, path, json={}).status_code == 403, path
    assert as_admin("GET", "/api/v1/admin/users/nobody/quota").status_code == 404


def test_defaults_layer_over_the_configuration(
    settings: dict[str, str],
    make_app: Callable[[Config], Flask],
    make_user: Callable[..., User],
) -> None:
    settings["DEVSPACE_QUOTA_DEFAULTS"] = "spaces=5,requests.cpu=3"
    app = make_app(load_config(settings))
    client = app.test_client()
    root = make_user("root2", role=Role.ADMIN)
    token = bearer(make_token(app, root, "spaces admin"))
    shown = client.get("/api/v1/admin/quota-defaults", headers=token).get_json()
    assert shown["configured"]["spaces"] == 5
    assert shown["configured"]["requests_cpu"] == "3"
    assert shown["stored"]["spaces"] is None
    assert shown["effective"]["spaces"] == 5
    put = client.put(
        "/api/v1/admin/quota-defaults", headers=token, json={"spaces": 7, "pods": 9}
    ).get_json()
    assert (put["stored"]["spaces"], put["effective"]["spaces"]) == (7, 7)
    assert put["effective"]["requests_cpu"] == "3"
    mine = client.get("/api/v1/quota", headers=token).get_json()
    assert (mine["effective"]["spaces"], mine["effective"]["pods"]) == (7, 9)


def test_usage_per_user_and_per_space(
    app: Flask, as_admin: Caller, as_alice: Caller, as_bob: Caller, alice: User
) -> None:
    as_alice("POST", "/api/v1/spaces", json=new_space())
    bob_id = as_bob("POST", "/api/v1/spaces", json=new_space()).get_json()["owner_id"]
    as_bob("POST", "/api/v1/spaces", json=new_space("gone"))
    as_bob("DELETE", "/api/v1/spaces/gone")
    observe(app, "work", alice, {"requests.memory": "512Mi"})
    report = as_admin("GET", "/api/v1/admin/usage").get_json()
    assert [(u["username"], u["usage"]["spaces"]) for u in report["users"]] == [
        ("alice", 1),
        ("bob", 1),
    ]
    assert report["users"][0]["usage"]["used"] == {"requests.memory": "512Mi"}
    assert report["users"][0]["quota"]["spaces"] == 3
    assert sorted((s["owner_id"], s["name"]) for s in report["spaces"]) == sorted(
        [(alice.id, "work"), (bob_id, "work")]
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("spaces=x", "use a whole number"),
        ("requests.cpu=-1", "is negative"),
        ("gpus=1", "with a name of"),
        ("requests.memory", "write name=value"),
    ],
)
def test_bad_configured_defaults_are_refused(
    settings: dict[str, str], value: str, says: str
) -> None:
    settings["DEVSPACE_QUOTA_DEFAULTS"] = value
    with pytest.raises(ConfigError, match="DEVSPACE_QUOTA_DEFAULTS") as caught:
        load_config(settings)
    assert says in str(caught.value)
