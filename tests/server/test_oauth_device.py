"""The device authorization grant (RFC 8628), and the attacks on it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from devspace_server.auth import passwords
from devspace_server.auth.consent import normalise_user_code
from devspace_server.context import state
from devspace_server.models import DeviceAuthorization, Role, User, utcnow

from .browser import sign_in
from .conftest import PASSWORD
from .oauth_flows import approve_device, bearer, csrf_of, poll, refresh, start_device


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
    return app.test_client()


def age_device(app: Flask, **changes: object) -> None:
    """Move a device authorization's clock: e.g. `last_polled_at` into the past."""
    with app.app_context(), state().sessions() as session:
        session.execute(update(DeviceAuthorization).values(**changes))
        session.commit()


def stored_device(app: Flask) -> DeviceAuthorization:
    with app.app_context(), state().sessions() as session:
        return session.scalars(select(DeviceAuthorization)).one()


def test_the_complete_device_flow(
    app: Flask, make_user: Callable[..., User], cli: FlaskClient
) -> None:
    make_user("alice")
    started = start_device(cli)
    assert started["verification_uri"] == "http://localhost:8080/device"
    assert started["expires_in"] == 600
    assert started["interval"] == 5
    assert poll(cli, started["device_code"]).get_json()["error"] == "authorization_pending"

    browser = app.test_client()
    # The person opens the link from the terminal, signs in, and lands on the page again.
    link = started["verification_uri_complete"].removeprefix("http://localhost:8080")
    assert browser.get(link).status_code == 303
    assert sign_in(browser, "alice", PASSWORD, next_url=link).headers["Location"] == link
    page = browser.get(link)
    assert started["user_code"] in page.get_data(as_text=True)
    assert "<script" not in page.get_data(as_text=True)

    shown = browser.post(
        "/device", data={"csrf_token": csrf_of(page), "user_code": started["user_code"]}
    )
    html = shown.get_data(as_text=True)
    assert "the devspace command-line tool" in html
    assert "(spaces)" in html
    assert "(ssh)" in html
    done = browser.post(
        "/device/decide",
        data={
            "csrf_token": csrf_of(shown),
            "user_code": started["user_code"],
            "decision": "allow",
        },
    )
    assert "Device connected" in done.get_data(as_text=True)

    age_device(app, last_polled_at=utcnow() - timedelta(seconds=10))
    tokens = poll(cli, started["device_code"]).get_json()
    assert tokens["scope"] == "spaces ssh"
    assert tokens["expires_in"] == 600
    me = cli.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert me.get_json()["username"] == "alice"
    renewed = refresh(cli, tokens["refresh_token"])
    assert renewed.status_code == 200


def test_the_typed_code_may_differ_in_case_and_dashes() -> None:
    assert normalise_user_code(" bcdf ghjk ") == "BCDF-GHJK"
    assert normalise_user_code("BCDF-GHJK") == "BCDF-GHJK"
    assert normalise_user_code("bcdfghjk") == "BCDF-GHJK"


def test_polling_too_fast_is_answered_with_slow_down_and_a_longer_interval(
    app: Flask, cli: FlaskClient
) -> None:
    started = start_device(cli)
    assert poll(cli, started["device_code"]).get_json()["error"] == "authorization_pending"
    assert poll(cli, started["device_code"]).get_json()["error"] == "slow_down"
    assert stored_device(app).interval == 10
    # Waiting the old interval is not enough any more; the new one is.
    age_device(app, last_polled_at=utcnow() - timedelta(seconds=6))
    assert poll(cli, started["device_code"]).get_json()["error"] == "slow_down"
    assert stored_device(app).interval == 15
    age_device(app, last_polled_at=utcnow() - timedelta(seconds=15))
    assert poll(cli, started["device_code"]).get_json()["error"] == "authorization_pending"


def test_a_device_code_redeemed_twice_is_refused_and_its_tokens_revoked(
    app: Flask, browser: FlaskClient, cli: FlaskClient
) -> None:
    started = start_device(cli)
    approve_device(browser, started["user_code"])
    first = poll(cli, started["device_code"]).get_json()
    assert "access_token" in first
    again = poll(cli, started["device_code"])
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"
    assert cli.get("/api/v1/me", headers=bearer(first["access_token"])).status_code == 401


def test_an_expired_device_code_is_refused(
    app: Flask, browser: FlaskClient, cli: FlaskClient
) -> None:
    started = start_device(cli)
    approve_device(browser, started["user_code"])
    age_device(app, expires_at=utcnow() - timedelta(seconds=1))
    assert poll(cli, started["device_code"]).get_json()["error"] == "expired_token"


def test_an_expired_user_code_cannot_be_approved(
    app: Flask, browser: FlaskClient, cli: FlaskClient
) -> None:
    started = start_device(cli)
    age_device(app, expires_at=utcnow() - timedelta(seconds=1))
    page = browser.get("/device")
    response = browser.post(
        "/device", data={"csrf_token": csrf_of(page), "user_code": started["user_code"]}
    )
    assert response.status_code == 400
    assert "wrong or has expired" in response.get_data(as_text=True)


def test_a_denied_device_gets_access_denied(browser: FlaskClient, cli: FlaskClient) -> None:
    started = start_device(cli)
    assert "Request denied" in approve_device(browser, started["user_code"], "deny").get_data(
        as_text=True
    )
    assert poll(cli, started["device_code"]).get_json()["error"] == "access_denied"


def test_an_unknown_device_code_is_refused(cli: FlaskClient) -> None:
    assert poll(cli, "made-up").get_json()["error"] == "invalid_request"


def test_guessing_user_codes_is_throttled(browser: FlaskClient, cli: FlaskClient) -> None:
    started = start_device(cli)
    page = browser.get("/device")
    token = csrf_of(page)
    for guess in ("BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD"):
        wrong = browser.post("/device", data={"csrf_token": token, "user_code": guess})
        assert wrong.status_code == 400
    # Three failures (the test limit per account) and even the right code must wait.
    right = browser.post("/device", data={"csrf_token": token, "user_code": started["user_code"]})
    assert right.status_code == 429
    assert int(right.headers["Retry-After"]) > 0


def test_the_device_page_needs_sign_in_and_the_csrf_token(
    browser: FlaskClient, cli: FlaskClient, app: Flask
) -> None:
    started = start_device(cli)
    stranger = app.test_client()
    assert stranger.get("/device").status_code == 303
    assert stranger.post("/device", data={"user_code": started["user_code"]}).status_code == 303
    browser.get("/device")
    forged = browser.post("/device/decide", data={"user_code": started["user_code"]})
    assert forged.status_code == 400
    assert poll(cli, started["device_code"]).get_json()["error"] == "authorization_pending"


def test_admin_is_granted_to_a_device_only_for_an_admin(
    app: Flask, make_user: Callable[..., User], browser: FlaskClient, cli: FlaskClient
) -> None:
    started = start_device(cli, scope="spaces admin")
    approve_device(browser, started["user_code"])
    assert poll(cli, started["device_code"]).get_json()["scope"] == "spaces"

    make_user("root", role=Role.ADMIN)
    admin_browser = app.test_client()
    sign_in(admin_browser, "root", PASSWORD)
    started = start_device(cli, scope="spaces admin")
    approve_device(admin_browser, started["user_code"])
    assert poll(cli, started["device_code"]).get_json()["scope"] == "spaces admin"


def test_unknown_scopes_and_clients_are_refused_at_the_device_endpoint(cli: FlaskClient) -> None:
    bad_scope = cli.post(
        "/oauth/device_authorization", data={"client_id": "devspace-cli", "scope": "root"}
    )
    assert bad_scope.get_json()["error"] == "invalid_scope"
    bad_client = cli.post("/oauth/device_authorization", data={"client_id": "other"})
    assert bad_client.get_json()["error"] == "invalid_client"
