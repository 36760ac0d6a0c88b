"""Who may call which API route, checked on every route the app serves.

The routes are found by walking Flask's URL map, never listed by hand, so a route added
later is covered the moment it exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from devspace_server.api.openapi import IGNORED_METHODS, documented_operations
from devspace_server.auth import passwords
from devspace_server.models import Role, User

from .oauth_flows import bearer, make_token, set_user


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about tokens, not the hash."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


def api_routes(app: Flask, prefix: str = "/api/") -> Iterator[tuple[str, str, str]]:
    """(method, concrete path, rule) for every route under `prefix`, variables filled in."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix):
            continue
        path = _VARIABLE.sub(lambda m: "1" if m.group("converter") == "int" else "x", rule.rule)
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            yield method, path, rule.rule


def call(client: FlaskClient, method: str, path: str, token: str | None) -> Any:
    headers = bearer(token) if token else {}
    return client.open(path, method=method, headers=headers, json={})


def public_paths(app: Flask) -> set[str]:
    with app.test_request_context():
        return {rule.rule for rule, _m, spec in documented_operations(app) if spec.public}


def test_the_walk_finds_the_admin_routes(app: Flask) -> None:
    admin = {(m, r) for m, _p, r in api_routes(app, "/api/v1/admin/")}
    assert ("GET", "/api/v1/admin/users") in admin
    assert ("PATCH", "/api/v1/admin/users/<user_id>") in admin
    assert ("GET", "/api/v1/admin/audit") in admin
    assert len(admin) >= 7


def test_every_api_route_but_the_public_ones_needs_a_token(app: Flask, client: FlaskClient) -> None:
    public = public_paths(app)
    assert "/api/v1/openapi.json" in public
    checked = 0
    for method, path, rule in api_routes(app):
        if rule in public:
            continue
        response = call(client, method, path, None)
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("scope", ["spaces ssh", "spaces ssh admin"])
def test_a_users_token_is_refused_on_every_admin_route(
    app: Flask, make_user: Callable[..., User], client: FlaskClient, scope: str
) -> None:
    # Even a token that claims `admin` (say, issued before a demotion) gets nothing.
    token = make_token(app, make_user("alice"), scope)
    for method, path, _rule in api_routes(app, "/api/v1/admin/"):
        response = call(client, method, path, token)
        assert response.status_code == 403, (method, path)
        assert response.mimetype == "application/problem+json"
        assert 'error="insufficient_scope", scope="admin"' in response.headers["WWW-Authenticate"]


def test_an_admins_token_without_the_admin_scope_is_refused_on_every_admin_route(
    app: Flask, make_user: Callable[..., User], client: FlaskClient
) -> None:
    token = make_token(app, make_user("root", role=Role.ADMIN), "spaces ssh")
    for method, path, _rule in api_routes(app, "/api/v1/admin/"):
        assert call(client, method, path, token).status_code == 403, (method, path)


def test_a_demoted_admin_loses_admin_at_once(
    app: Flask, make_user: Callable[..., User], client: FlaskClient
) -> None:
    root = make_user("root", role=Role.ADMIN)
    token = make_token(app, root, "admin")
    assert client.get("/api/v1/admin/users", headers=bearer(token)).status_code == 200
    set_user(app, root.id, role=Role.USER)
    assert client.get("/api/v1/admin/users", headers=bearer(token)).status_code == 403
    assert client.get("/api/v1/me", headers=bearer(token)).get_json()["scopes"] == []


def test_the_openapi_document_declares_each_operations_security(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["oauth2"]["flows"]["authorizationCode"]["tokenUrl"].endswith("/oauth/token")
    assert set(schemes["oauth2"]["flows"]["authorizationCode"]["scopes"]) == {
        "spaces",
        "ssh",
        "admin",
    }
    assert schemes["personalToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["personalToken"]["description"],
    }
    paths = document["paths"]
    assert paths["/api/v1/admin/users"]["get"]["security"] == [
        {"oauth2": ["admin"]},
        {"personalToken": ["admin"]},
    ]
    assert paths["/api/v1/me"]["get"]["security"] == [{"oauth2": []}, {"personalToken": []}]
    assert {"401", "403"} <= set(paths["/api/v1/me"]["get"]["responses"])
    assert paths["/healthz"]["get"]["security"] == []
