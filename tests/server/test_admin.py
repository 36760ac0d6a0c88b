"""The admin users API and the audit log behind it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from devspace_server.auth import passwords
from devspace_server.models import Role, User

from .browser import sign_in, signed_in_as
from .conftest import PASSWORD
from .oauth_flows import bearer, make_token

ADMIN_IP = "203.0.113.9"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about the API, not the hash."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def root(make_user: Callable[..., User]) -> User:
    return make_user("root", role=Role.ADMIN)


@pytest.fixture
def admin(app: Flask, root: User, client: FlaskClient) -> Callable[..., Any]:
    """Calls the API as root, with an admin token, from `ADMIN_IP`."""
    token = make_token(app, root, "admin")

    def request(method: str, path: str, **kwargs: Any) -> Any:
        return client.open(
            path,
            method=method,
            headers=bearer(token),
            environ_base={"REMOTE_ADDR": ADMIN_IP},
            **kwargs,
        )

    return request


def test_users_are_listed_a_page_at_a_time(
    make_user: Callable[..., User], admin: Callable[..., Any]
) -> None:
    for name in ("carol", "alice", "bob"):
        make_user(name)
    first = admin("GET", "/api/v1/admin/users?limit=2").get_json()
    assert [u["username"] for u in first["items"]] == ["alice", "bob"]
    assert (first["total"], first["limit"], first["offset"]) == (4, 2, 0)
    second = admin("GET", "/api/v1/admin/users?limit=2&offset=2").get_json()
    assert [u["username"] for u in second["items"]] == ["carol", "root"]
    assert admin("GET", "/api/v1/admin/users?limit=0").status_code == 422


def test_a_user_is_shown_by_id(make_user: Callable[..., User], admin: Callable[..., Any]) -> None:
    alice = make_user("alice")
    shown = admin("GET", f"/api/v1/admin/users/{alice.id}").get_json()
    assert (shown["id"], shown["username"], shown["role"], shown["disabled"]) == (
        alice.id,
        "alice",
        "user",
        False,
    )
    missing = admin("GET", "/api/v1/admin/users/no-such-id")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"


def test_disabling_a_user_ends_their_access_and_is_audited(
    app: Flask,
    make_user: Callable[..., User],
    root: User,
    admin: Callable[..., Any],
    client: FlaskClient,
) -> None:
    alice = make_user("alice")
    token = make_token(app, alice)
    browser = app.test_client()
    sign_in(browser, "alice", PASSWORD)
    changed = admin("PATCH", f"/api/v1/admin/users/{alice.id}", json={"disabled": True})
    assert changed.get_json()["disabled"] is True
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert signed_in_as(browser) is None

    events = admin("GET", f"/api/v1/admin/audit?target={alice.id}").get_json()["items"]
    (event,) = [e for e in events if e["action"] == "user.disabled"]
    assert (event["actor_id"], event["actor_name"], event["ip"]) == (root.id, "root", ADMIN_IP)
    assert event["details"] == {"tokens_revoked": 1}
    assert event["created_at"]

    enabled = admin("PATCH", f"/api/v1/admin/users/{alice.id}", json={"disabled": False})
    assert enabled.get_json()["disabled"] is False
    actions = [e["action"] for e in admin("GET", "/api/v1/admin/audit").get_json()["items"]]
    assert actions[:2] == ["user.enabled", "user.disabled"]


def test_roles_change_and_are_audited(
    make_user: Callable[..., User], admin: Callable[..., Any]
) -> None:
    alice = make_user("alice")
    promoted = admin("PATCH", f"/api/v1/admin/users/{alice.id}", json={"role": "admin"})
    assert promoted.get_json()["role"] == "admin"
    (event,) = admin("GET", "/api/v1/admin/audit?action=user.role_changed").get_json()["items"]
    assert event["details"] == {"from": "user", "to": "admin"}
    assert event["target"] == alice.id
    bad = admin("PATCH", f"/api/v1/admin/users/{alice.id}", json={"role": "owner"})
    assert bad.status_code == 422


def test_an_admin_cannot_disable_or_demote_themselves(
    root: User, admin: Callable[..., Any]
) -> None:
    for change in ({"disabled": True}, {"role": "user"}):
        response = admin("PATCH", f"/api/v1/admin/users/{root.id}", json=change)
        assert response.status_code == 409


def test_a_users_tokens_are_listed_and_revoked(
    app: Flask, make_user: Callable[..., User], admin: Callable[..., Any], client: FlaskClient
) -> None:
    alice = make_user("alice")
    first, second = make_token(app, alice), make_token(app, alice, "ssh")
    listed = admin("GET", f"/api/v1/admin/users/{alice.id}/tokens").get_json()["items"]
    assert [t["scopes"] for t in listed] == [["ssh"], ["spaces", "ssh"]]
    assert all("token" not in t for t in listed)

    gone = admin("DELETE", f"/api/v1/admin/users/{alice.id}/tokens/{listed[0]['id']}")
    assert gone.status_code == 204
    assert client.get("/api/v1/me", headers=bearer(second)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(first)).status_code == 200
    # A token named under the wrong user is not found, and not revoked.
    other = admin("DELETE", f"/api/v1/admin/users/no-such-user/tokens/{listed[1]['id']}")
    assert other.status_code == 404

    assert admin("DELETE", f"/api/v1/admin/users/{alice.id}/tokens").status_code == 204
    assert client.get("/api/v1/me", headers=bearer(first)).status_code == 401
    assert admin("GET", f"/api/v1/admin/users/{alice.id}/tokens").get_json()["items"] == []
    actions = [e["action"] for e in admin("GET", "/api/v1/admin/audit").get_json()["items"]]
    assert actions == ["token.revoked_all", "token.revoked"]


def test_the_audit_log_pages_and_filters(
    make_user: Callable[..., User], root: User, admin: Callable[..., Any]
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    for user in (alice, bob, alice):
        admin("PATCH", f"/api/v1/admin/users/{user.id}", json={"disabled": True})
        admin("PATCH", f"/api/v1/admin/users/{user.id}", json={"disabled": False})
    everything = admin("GET", "/api/v1/admin/audit").get_json()
    assert len(everything["items"]) == 6
    assert everything["next_before"] is None

    page = admin("GET", "/api/v1/admin/audit?limit=4").get_json()
    assert len(page["items"]) == 4
    rest = admin("GET", f"/api/v1/admin/audit?limit=4&before={page['next_before']}").get_json()
    assert [e["id"] for e in page["items"] + rest["items"]] == [
        e["id"] for e in everything["items"]
    ]
    assert rest["next_before"] is None

    about_alice = admin("GET", f"/api/v1/admin/audit?target={alice.id}").get_json()["items"]
    assert len(about_alice) == 4
    by_root = admin("GET", f"/api/v1/admin/audit?actor={root.id}").get_json()["items"]
    assert len(by_root) == 6
    assert admin("GET", f"/api/v1/admin/audit?actor={bob.id}").get_json()["items"] == []
