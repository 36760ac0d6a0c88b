"""Helpers that play the CLI and the person at the browser in the OAuth flows, through
Flask's test client, and that mint tokens straight into the database for API tests."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from devspace_server.auth import tokens
from devspace_server.auth.oauth import CLIENT_ID
from devspace_server.context import state
from devspace_server.models import ApiToken, TokenKind, User, utcnow

REDIRECT_URI = "http://127.0.0.1:53682/callback"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_USER_CODE = re.compile(r'name="user_code" value="([^"]+)"')


@dataclass(frozen=True)
class Pkce:
    """A PKCE verifier and its S256 challenge."""

    verifier: str
    challenge: str


def pkce() -> Pkce:
    """A fresh verifier (43+ characters) and its challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_url(
    challenge: str | None,
    *,
    redirect_uri: str = REDIRECT_URI,
    scope: str | None = None,
    method: str | None = "S256",
    state: str = "st-123",
) -> str:
    """The `/oauth/authorize` URL the CLI would open in a browser."""
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect_uri}
    params["state"] = state
    if challenge is not None:
        params["code_challenge"] = challenge
    if method is not None:
        params["code_challenge_method"] = method
    if scope is not None:
        params["scope"] = scope
    return f"/oauth/authorize?{urlencode(params)}"


def csrf_of(response: TestResponse) -> str:
    """The CSRF token in a page's form."""
    found = _CSRF.search(response.get_data(as_text=True))
    assert found, response.get_data(as_text=True)
    return found.group(1)


def consent(browser: FlaskClient, url: str, decision: str = "allow") -> TestResponse:
    """Open the consent page at `url` and press Allow (or Deny); returns the redirect."""
    page = browser.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)
    return browser.post(url, data={"csrf_token": csrf_of(page), "decision": decision})


def redirect_params(response: TestResponse) -> dict[str, str]:
    """The query parameters of the redirect back to the CLI's loopback address."""
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(f"{REDIRECT_URI}?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def redeem_code(cli: FlaskClient, code: str, verifier: str | None, **extra: str) -> TestResponse:
    """The CLI's token request for an authorization code."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        **extra,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return cli.post("/oauth/token", data=form)


def code_login(browser: FlaskClient, cli: FlaskClient, scope: str | None = None) -> dict[str, Any]:
    """The whole loopback flow for a signed-in `browser`; returns the token response."""
    keys = pkce()
    params = redirect_params(consent(browser, authorize_url(keys.challenge, scope=scope)))
    response = redeem_code(cli, params["code"], keys.verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def refresh(cli: FlaskClient, refresh_token: str) -> TestResponse:
    """The CLI's refresh request."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    return cli.post("/oauth/token", data=form)


def start_device(cli: FlaskClient, scope: str | None = None) -> dict[str, Any]:
    """The device authorization request; returns its JSON answer."""
    form = {"client_id": CLIENT_ID, **({"scope": scope} if scope is not None else {})}
    response = cli.post("/oauth/device_authorization", data=form)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def poll(cli: FlaskClient, device_code: str) -> TestResponse:
    """One poll of the token endpoint with a device code."""
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": device_code,
        "client_id": CLIENT_ID,
    }
    return cli.post("/oauth/token", data=form)


def approve_device(browser: FlaskClient, user_code: str, decision: str = "allow") -> TestResponse:
    """Type `user_code` on the device page and press Allow (or Deny)."""
    page = browser.get("/device")
    shown = browser.post("/device", data={"csrf_token": csrf_of(page), "user_code": user_code})
    assert shown.status_code == 200, shown.get_data(as_text=True)
    found = _USER_CODE.search(shown.get_data(as_text=True))
    assert found
    form = {"csrf_token": csrf_of(shown), "user_code": found.group(1), "decision": decision}
    return browser.post("/device/decide", data=form)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


def make_token(
    app: Flask,
    user: User,
    scope: str = "spaces ssh",
    *,
    kind: TokenKind = TokenKind.PERSONAL,
    lifetime: timedelta = timedelta(hours=1),
) -> str:
    """A token for `user` written straight to the database; returns its secret."""
    secret = tokens.new_secret(kind)
    with app.app_context(), state().sessions() as session:
        session.add(
            ApiToken(
                token_hash=tokens.digest(secret),
                kind=kind,
                user_id=user.id,
                name="test",
                scope=scope,
                expires_at=utcnow() + lifetime,
            )
        )
        session.commit()
    return secret


def set_user(app: Flask, user_id: str, **changes: object) -> None:
    """Change columns of a user directly in the database."""
    with app.app_context(), state().sessions() as session:
        user = session.get(User, user_id)
        assert user is not None
        for key, value in changes.items():
            setattr(user, key, value)
        session.commit()
