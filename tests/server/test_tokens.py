"""Refresh rotation, revocation, Bearer checks and personal access tokens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from devspace_server.auth import passwords
from devspace_server.config import Config, load_config
from devspace_server.context import state
from devspace_server.errors import ConfigError
from devspace_server.models import ApiToken, AuditEvent, TokenKind, User

from .browser import sign_in
from .conftest import PASSWORD
from .oauth_flows import bearer, code_login, make_token, refresh, set_user


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about tokens, not the hash."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def browser(app: Flask, alice: User) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, "alice", PASSWORD).status_code == 303
    return client


def test_a_reused_refresh_token_revokes_the_whole_family(
    app: Flask, browser: FlaskClient, client: FlaskClient
) -> None:
    first = code_login(browser, client)
    second = refresh(client, first["refresh_token"]).get_json()
    third = refresh(client, second["refresh_token"]).get_json()
    assert client.get("/api/v1/me", headers=bearer(third["access_token"])).status_code == 200

    # Someone replays the first, rotated refresh token: one of the two holders is a thief.
    stolen = refresh(client, first["refresh_token"])
    assert stolen.status_code == 400
    assert stolen.get_json()["error"] == "invalid_grant"
    for access in (first, second, third):
        assert client.get("/api/v1/me", headers=bearer(access["access_token"])).status_code == 401
    assert refresh(client, third["refresh_token"]).get_json()["error"] == "invalid_grant"
    with app.app_context(), state().sessions() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert "oauth.refresh_token_replayed" in actions


def test_a_refresh_cannot_widen_the_scope(browser: FlaskClient, client: FlaskClient) -> None:
    tokens = code_login(browser, client, scope="spaces")
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "devspace-cli",
            "scope": "spaces ssh",
        },
    )
    assert response.get_json()["error"] == "invalid_scope"
    # A refused request does not burn the refresh token.
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_a_disabled_users_tokens_are_refused_at_once(
    app: Flask, alice: User, browser: FlaskClient, client: FlaskClient
) -> None:
    tokens = code_login(browser, client)
    personal = make_token(app, alice)
    set_user(app, alice.id, disabled=True)
    for token in (tokens["access_token"], personal):
        response = client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert "disabled" in response.get_json()["detail"]
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert refresh(client, tokens["refresh_token"]).status_code == 400


def test_a_request_without_a_token_gets_401_with_www_authenticate(client: FlaskClient) -> None:
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="devspace"'
    assert response.get_json()["type"] == "urn:devspace:problem:unauthorized"


@pytest.mark.parametrize(
    "header", ["Basic YWxpY2U6cHc=", "Bearer", "Bearer dsp_made-up", "bearer dsr_x"]
)
def test_malformed_or_unknown_tokens_get_401(client: FlaskClient, header: str) -> None:
    response = client.get("/api/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="devspace", error=')


def test_expired_and_refresh_tokens_do_not_work_as_bearer_tokens(
    app: Flask, alice: User, client: FlaskClient
) -> None:
    expired = make_token(app, alice, lifetime=timedelta(seconds=-1))
    assert client.get("/api/v1/me", headers=bearer(expired)).status_code == 401
    refresh_token = make_token(app, alice, kind=TokenKind.REFRESH)
    assert client.get("/api/v1/me", headers=bearer(refresh_token)).status_code == 401


def test_revoking_an_access_token_leaves_the_sign_in(
    browser: FlaskClient, client: FlaskClient
) -> None:
    tokens = code_login(browser, client)
    form = {"token": tokens["access_token"], "client_id": "devspace-cli"}
    assert client.post("/oauth/revoke", data=form).status_code == 200
    assert client.get("/api/v1/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_revoking_an_unknown_token_succeeds_quietly(client: FlaskClient) -> None:
    form = {"token": "dsr_unknown", "client_id": "devspace-cli"}
    assert client.post("/oauth/revoke", data=form).status_code == 200


def test_personal_tokens_are_created_shown_once_listed_and_revoked(
    app: Flask, alice: User, client: FlaskClient
) -> None:
    session_token = make_token(app, alice, "spaces ssh")
    created = client.post(
        "/api/v1/tokens",
        json={"name": "ci", "scopes": ["ssh"], "expires_in_days": 7},
        headers=bearer(session_token),
    )
    assert created.status_code == 201
    body = created.get_json()
    secret = body["token"]
    assert secret.startswith("dsp_")
    assert (body["name"], body["scopes"], body["kind"]) == ("ci", ["ssh"], "personal")

    me = client.get("/api/v1/me", headers=bearer(secret)).get_json()
    assert me["scopes"] == ["ssh"]
    listed = client.get("/api/v1/tokens", headers=bearer(secret)).get_json()["items"]
    assert {t["name"] for t in listed} == {"ci", "test"}
    assert all("token" not in t for t in listed)
    with app.app_context(), state().sessions() as session:
        assert session.scalar(select(ApiToken).where(ApiToken.token_hash == secret)) is None

    revoked = client.delete(f"/api/v1/tokens/{body['id']}", headers=bearer(session_token))
    assert revoked.status_code == 204
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 401


def test_a_personal_token_cannot_exceed_the_callers_scopes(
    app: Flask, alice: User, client: FlaskClient
) -> None:
    narrow = make_token(app, alice, "ssh")
    for scopes in (["spaces"], ["admin"]):
        response = client.post(
            "/api/v1/tokens", json={"name": "x", "scopes": scopes}, headers=bearer(narrow)
        )
        assert response.status_code == 403
        assert "insufficient_scope" in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "scopes": []},
        {"name": "", "scopes": ["ssh"]},
        {"name": "x", "scopes": ["ssh"], "expires_in_days": 366},
        {"name": "x", "scopes": ["ssh"], "expires_in_days": 0},
    ],
)
def test_invalid_personal_tokens_are_refused(
    app: Flask, alice: User, client: FlaskClient, body: dict[str, object]
) -> None:
    response = client.post("/api/v1/tokens", json=body, headers=bearer(make_token(app, alice)))
    assert response.status_code == 422


def test_a_users_token_cannot_touch_another_users_tokens(
    app: Flask, alice: User, make_user: Callable[..., User], client: FlaskClient
) -> None:
    bob = make_user("bob")
    bobs = client.post(
        "/api/v1/tokens",
        json={"name": "bob-ci", "scopes": ["ssh"]},
        headers=bearer(make_token(app, bob)),
    ).get_json()
    mine = make_token(app, alice)
    assert client.delete(f"/api/v1/tokens/{bobs['id']}", headers=bearer(mine)).status_code == 404
    listed = client.get("/api/v1/tokens", headers=bearer(mine)).get_json()["items"]
    assert "bob-ci" not in {t["name"] for t in listed}
    assert client.get("/api/v1/me", headers=bearer(bobs["token"])).status_code == 200


def test_the_access_token_lifetime_is_configurable_within_bounds(
    settings: dict[str, str], make_app: Callable[[Config], Flask], alice: User
) -> None:
    app = make_app(load_config({**settings, "DEVSPACE_ACCESS_TOKEN_LIFETIME_SECONDS": "120"}))
    browser, cli = app.test_client(), app.test_client()
    sign_in(browser, "alice", PASSWORD)
    tokens = code_login(browser, cli)
    assert tokens["expires_in"] == 120
    with app.app_context(), state().sessions() as session:
        access = session.scalars(select(ApiToken).where(ApiToken.kind == TokenKind.ACCESS)).one()
        assert access.expires_at is not None
        assert 110 < (access.expires_at - access.created_at).total_seconds() <= 121
    with pytest.raises(ConfigError, match="ACCESS_TOKEN_LIFETIME_SECONDS is 86400"):
        load_config({**settings, "DEVSPACE_ACCESS_TOKEN_LIFETIME_SECONDS": "86400"})
