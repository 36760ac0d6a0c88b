"""The authorization code flow with PKCE and a loopback redirect, and the attacks on it."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from devspace_server.auth import passwords
from devspace_server.auth.oauth import loopback_redirect_ok
from devspace_server.context import state
from devspace_server.models import ApiToken, Role, User

from .browser import sign_in
from .conftest import PASSWORD
from .oauth_flows import (
    authorize_url,
    bearer,
    code_login,
    consent,
    csrf_of,
    pkce,
    redeem_code,
    redirect_params,
    refresh,
)


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about OAuth, not the hash."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def browser(app: Flask, make_user: Callable[..., User]) -> FlaskClient:
    """A browser signed in as alice, a user."""
    make_user("alice")
    client = app.test_client()
    assert sign_in(client, "alice", PASSWORD).status_code == 303
    return client


@pytest.fixture
def cli(app: Flask) -> FlaskClient:
    """The CLI's HTTP client: no cookies shared with the browser."""
    return app.test_client()


def test_the_server_publishes_its_metadata(client: FlaskClient) -> None:
    meta = client.get("/.well-known/oauth-authorization-server").get_json()
    assert meta["issuer"] == "http://localhost:8080"
    assert meta["token_endpoint"] == "http://localhost:8080/oauth/token"  # noqa: S105 - a URL
    assert (
        meta["device_authorization_endpoint"] == "http://localhost:8080/oauth/device_authorization"
    )
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["token_endpoint_auth_methods_supported"] == ["none"]
    assert meta["scopes_supported"] == ["spaces", "ssh", "admin"]


def test_the_complete_loopback_flow(
    app: Flask, make_user: Callable[..., User], cli: FlaskClient
) -> None:
    make_user("alice")
    browser = app.test_client()
    keys = pkce()
    url = authorize_url(keys.challenge)
    # Not signed in yet: sign in first, then come back to the same request.
    to_login = browser.get(url)
    assert to_login.status_code == 303
    back = parse_qs(urlsplit(to_login.headers["Location"]).query)["next"][0]
    assert back == url
    assert sign_in(browser, "alice", PASSWORD, next_url=back).headers["Location"] == url

    page = browser.get(url)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<script" not in html
    assert "the devspace command-line tool" in html
    assert "port 53682" in html
    assert "(spaces)" in html
    assert "(ssh)" in html
    assert "(admin)" not in html
    # The form's redirect back to the CLI must not be blocked by the page's own CSP.
    assert "form-action 'self' http://127.0.0.1:53682;" in page.headers["Content-Security-Policy"]
    allowed = browser.post(url, data={"csrf_token": csrf_of(page), "decision": "allow"})
    params = redirect_params(allowed)
    assert params["state"] == "st-123"

    response = redeem_code(cli, params["code"], keys.verifier)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.get_json()
    assert tokens["token_type"] == "Bearer"  # noqa: S105 - a type, not a secret
    assert tokens["expires_in"] == 600
    assert tokens["scope"] == "spaces ssh"
    assert tokens["access_token"].startswith("dsa_")
    assert tokens["refresh_token"].startswith("dsr_")

    me = cli.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.get_json()["username"] == "alice"
    assert me.get_json()["scopes"] == ["spaces", "ssh"]

    renewed = refresh(cli, tokens["refresh_token"]).get_json()
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert cli.get("/api/v1/me", headers=bearer(renewed["access_token"])).status_code == 200

    revoked = cli.post(
        "/oauth/revoke", data={"token": renewed["refresh_token"], "client_id": "devspace-cli"}
    )
    assert revoked.status_code == 200
    # Revoking the refresh token ends the sign-in: its access tokens stop working too.
    for access in (tokens["access_token"], renewed["access_token"]):
        assert cli.get("/api/v1/me", headers=bearer(access)).status_code == 401
    assert refresh(cli, renewed["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_tokens_are_stored_only_as_hashes(
    app: Flask, browser: FlaskClient, cli: FlaskClient
) -> None:
    tokens = code_login(browser, cli)
    with app.app_context(), state().sessions() as session:
        stored = session.scalars(select(ApiToken.token_hash)).all()
    assert len(stored) == 2
    assert tokens["access_token"] not in stored
    assert all(len(h) == 64 for h in stored)


def test_denying_sends_access_denied_to_the_cli(browser: FlaskClient, cli: FlaskClient) -> None:
    params = redirect_params(consent(browser, authorize_url(pkce().challenge), "deny"))
    assert (params["error"], params["state"]) == ("access_denied", "st-123")
    assert "code" not in params


def test_consent_without_the_csrf_token_is_refused(browser: FlaskClient) -> None:
    url = authorize_url(pkce().challenge)
    browser.get(url)
    response = browser.post(url, data={"decision": "allow"})
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_a_replayed_code_is_refused_and_revokes_its_tokens(
    browser: FlaskClient, cli: FlaskClient
) -> None:
    keys = pkce()
    code = redirect_params(consent(browser, authorize_url(keys.challenge)))["code"]
    first = redeem_code(cli, code, keys.verifier).get_json()
    assert cli.get("/api/v1/me", headers=bearer(first["access_token"])).status_code == 200

    again = redeem_code(cli, code, keys.verifier)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"
    assert cli.get("/api/v1/me", headers=bearer(first["access_token"])).status_code == 401
    assert refresh(cli, first["refresh_token"]).get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("verifier", "error"),
    [(None, "invalid_request"), ("x" * 50, "invalid_grant"), ("short", "invalid_request")],
    ids=["missing", "wrong", "malformed"],
)
def test_a_missing_or_wrong_code_verifier_is_refused(
    browser: FlaskClient, cli: FlaskClient, verifier: str | None, error: str
) -> None:
    keys = pkce()
    code = redirect_params(consent(browser, authorize_url(keys.challenge)))["code"]
    response = redeem_code(cli, code, verifier)
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == error
    # A failed check does not burn the code for the CLI that holds the right verifier.
    assert redeem_code(cli, code, keys.verifier).status_code == 200


@pytest.mark.parametrize(
    ("challenge", "method"),
    [("plain-challenge-" + "x" * 40, "plain"), (None, None), ("c" * 43, None)],
    ids=["plain", "no-pkce", "no-method"],
)
def test_authorization_without_s256_pkce_is_refused(
    browser: FlaskClient, challenge: str | None, method: str | None
) -> None:
    response = browser.get(authorize_url(challenge, method=method))
    params = redirect_params(response)
    assert params["error"] == "invalid_request"
    assert "code" not in params


BAD_REDIRECTS = [
    "http://localhost:80@attacker.test/cb",
    "http://127.0.0.1.evil/",
    "http://127.0.0.1.evil:5000/callback",
    "http://127.0.0.1:5000/other",
    "http://127.0.0.1:5000/callback/",
    "http://127.0.0.1:5000/callback?next=x",
    "http://127.0.0.1:5000/callback#fragment",
    "http://user@127.0.0.1:5000/callback",
    "https://127.0.0.1:5000/callback",
    "http://localhost:5000/callback",
    "http://127.0.0.1/callback",
    "http://127.0.0.1:0/callback",
    "http://127.0.0.1:65536/callback",
    "http://[::1]:99999/callback",
    "http://attacker.test/callback",
    "http://127.0.0.1:5000@attacker.test/callback",
]


@pytest.mark.parametrize("redirect_uri", BAD_REDIRECTS)
def test_redirects_other_than_loopback_callback_are_refused_without_redirecting(
    browser: FlaskClient, redirect_uri: str
) -> None:
    assert not loopback_redirect_ok(redirect_uri)
    response = browser.get(authorize_url(pkce().challenge, redirect_uri=redirect_uri))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "is not supported by client" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:1/callback", "http://127.0.0.1:65535/callback", "http://[::1]:8/callback"],
)
def test_any_port_on_a_loopback_address_is_accepted(redirect_uri: str) -> None:
    assert loopback_redirect_ok(redirect_uri)


def test_the_code_only_works_with_the_redirect_it_was_issued_for(
    browser: FlaskClient, cli: FlaskClient
) -> None:
    keys = pkce()
    code = redirect_params(consent(browser, authorize_url(keys.challenge)))["code"]
    other = redeem_code(cli, code, keys.verifier, redirect_uri="http://127.0.0.1:1234/callback")
    assert other.get_json()["error"] == "invalid_grant"


def test_unknown_scopes_are_refused(browser: FlaskClient) -> None:
    response = browser.get(authorize_url(pkce().challenge, scope="spaces root"))
    assert redirect_params(response)["error"] == "invalid_scope"


def test_a_user_asking_for_admin_does_not_get_it(browser: FlaskClient, cli: FlaskClient) -> None:
    page = browser.get(authorize_url(pkce().challenge, scope="spaces admin"))
    assert "Not granted, because this account may not hold it: admin." in page.get_data(
        as_text=True
    )
    tokens = code_login(browser, cli, scope="spaces admin")
    assert tokens["scope"] == "spaces"
    assert cli.get("/api/v1/admin/users", headers=bearer(tokens["access_token"])).status_code == 403


def test_an_admin_gets_admin_only_when_asking_for_it(
    app: Flask, make_user: Callable[..., User], cli: FlaskClient
) -> None:
    make_user("root", role=Role.ADMIN)
    browser = app.test_client()
    sign_in(browser, "root", PASSWORD)
    assert code_login(browser, cli)["scope"] == "spaces ssh"
    tokens = code_login(browser, cli, scope="admin ssh")
    assert tokens["scope"] == "ssh admin"
    assert cli.get("/api/v1/admin/users", headers=bearer(tokens["access_token"])).status_code == 200


def test_a_user_asking_only_for_admin_is_refused(browser: FlaskClient) -> None:
    response = browser.get(authorize_url(pkce().challenge, scope="admin"))
    assert redirect_params(response)["error"] == "invalid_scope"


def test_the_token_endpoint_refuses_other_clients(browser: FlaskClient, cli: FlaskClient) -> None:
    keys = pkce()
    code = redirect_params(consent(browser, authorize_url(keys.challenge)))["code"]
    response = redeem_code(cli, code, keys.verifier, client_id="someone-else")
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"
    assert redeem_code(cli, code, keys.verifier).status_code == 200
