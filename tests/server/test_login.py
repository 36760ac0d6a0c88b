"""Signing in with a local account through the HTML pages, as a browser would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from http.cookies import SimpleCookie

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from devspace_server.auth import passwords
from devspace_server.config import Config
from devspace_server.context import state
from devspace_server.models import AuditEvent, LoginAttempt, User, WebSession

from .browser import csrf_token, sign_in, signed_in_as
from .conftest import PASSWORD


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about the pages, not the hash, and the
    real parameters cost 0.1 s per hash (test_accounts.py checks those)."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", cheap)


def audit_log(app: Flask) -> list[tuple[str, dict[str, object]]]:
    with app.app_context(), state().sessions() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        return [(e.action, e.details) for e in events]


def set_disabled(app: Flask, username: str, disabled: bool) -> None:
    with app.app_context(), state().sessions() as session:
        user = session.scalars(select(User).where(User.username == username)).one()
        user.disabled = disabled
        session.commit()


def cookie_attributes(set_cookie: str) -> dict[str, str | bool]:
    morsel = next(iter(SimpleCookie(set_cookie).values()))
    return {k: v for k, v in morsel.items() if v}


def test_the_sign_in_page_is_a_plain_form_with_a_csrf_token(client: FlaskClient) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<form method="post" action="/login">' in html
    assert "<script" not in html
    assert 'autocomplete="current-password"' in html
    assert len(csrf_token(client)) >= 40


def test_the_session_cookie_is_httponly_and_lax_and_secure_off_loopback(
    config: Config, make_app: Callable[[Config], Flask]
) -> None:
    local = make_app(config).test_client().get("/login").headers["Set-Cookie"]
    assert local.startswith("devspace=")
    attributes = cookie_attributes(local)
    assert attributes["httponly"] is True
    assert attributes["samesite"] == "Lax"
    assert "secure" not in attributes

    public = replace(config, public_url="https://devspace.example.com")
    remote = make_app(public).test_client().get("/login", base_url="https://devspace.example.com")
    assert remote.headers["Set-Cookie"].startswith("__Host-devspace=")
    assert cookie_attributes(remote.headers["Set-Cookie"])["secure"] is True
    assert remote.headers["Strict-Transport-Security"].startswith("max-age=")


def test_the_right_password_signs_in_and_is_audited(
    app: Flask, client: FlaskClient, make_user: Callable[..., User]
) -> None:
    user = make_user("alice")
    response = sign_in(client, "Alice", PASSWORD, ip="198.51.100.7")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert signed_in_as(client) == "alice"
    (event,) = audit_log(app)
    assert event == ("login.succeeded", {})
    with app.app_context(), state().sessions() as session:
        stored = session.get(User, user.id)
        assert stored is not None
        assert stored.last_login_at is not None
        row = session.scalars(select(AuditEvent)).one()
        assert (row.actor_id, row.ip, row.target) == (user.id, "198.51.100.7", user.id)


@pytest.mark.parametrize(
    ("next_url", "goes_to"),
    [
        ("/spaces?x=1", "/spaces?x=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ],
)
def test_after_sign_in_only_local_paths_are_followed(
    client: FlaskClient, make_user: Callable[..., User], next_url: str, goes_to: str
) -> None:
    make_user("alice")
    assert sign_in(client, "alice", PASSWORD, next_url=next_url).headers["Location"] == goes_to


@pytest.mark.parametrize("username", ["alice", "mallory"])
def test_a_wrong_password_or_unknown_name_gets_the_same_answer(
    app: Flask, client: FlaskClient, make_user: Callable[..., User], username: str
) -> None:
    make_user("alice")
    response = sign_in(client, username, "not the password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.get_data(as_text=True)
    assert signed_in_as(client) is None
    reason = "bad-password" if username == "alice" else "unknown-user"
    assert audit_log(app) == [("login.failed", {"username": username, "reason": reason})]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda token: {}, id="no-token"),
        pytest.param(lambda token: {"csrf_token": token[::-1]}, id="wrong-token"),
    ],
)
def test_a_sign_in_without_this_browsers_csrf_token_is_refused(
    client: FlaskClient, make_user: Callable[..., User], forge: Callable[[str], dict[str, str]]
) -> None:
    make_user("alice")
    form = {"username": "alice", "password": PASSWORD, **forge(csrf_token(client))}
    response = client.post("/login", data=form)
    assert response.status_code == 400
    assert "This form expired or came from another site" in response.get_data(as_text=True)
    assert signed_in_as(client) is None


def test_a_sign_in_posted_from_another_origin_is_refused(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    form = {"username": "alice", "password": PASSWORD, "csrf_token": csrf_token(client)}
    response = client.post("/login", data=form, headers={"Origin": "https://evil.example"})
    assert response.status_code == 400
    assert signed_in_as(client) is None


def test_a_token_from_another_browser_does_not_work(
    app: Flask, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    attacker, victim = app.test_client(), app.test_client()
    form = {"username": "alice", "password": PASSWORD, "csrf_token": csrf_token(attacker)}
    csrf_token(victim)  # the victim has a session, with its own token
    assert victim.post("/login", data=form).status_code == 400


def test_a_disabled_user_cannot_sign_in(
    app: Flask, client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("alice", disabled=True)
    response = sign_in(client, "alice", PASSWORD)
    assert response.status_code == 403
    assert "This account is disabled" in response.get_data(as_text=True)
    assert signed_in_as(client) is None
    assert audit_log(app) == [("login.failed", {"username": "alice", "reason": "disabled"})]
    # Only the right password learns that the account is disabled.
    assert sign_in(client, "alice", "not the password").status_code == 401


def test_disabling_a_user_ends_their_sessions_at_once(
    app: Flask, client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    sign_in(client, "alice", PASSWORD)
    assert signed_in_as(client) == "alice"
    set_disabled(app, "alice", True)
    assert signed_in_as(client) is None


def test_signing_out_ends_the_session_even_for_a_copied_cookie(
    app: Flask, client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    sign_in(client, "alice", PASSWORD)
    stolen = client.get_cookie("devspace")
    assert stolen is not None
    assert client.post("/logout", data={}).status_code == 400  # no CSRF token: refused
    assert signed_in_as(client) == "alice"

    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert signed_in_as(client) is None
    thief = app.test_client()
    thief.set_cookie("devspace", stolen.value)
    assert signed_in_as(thief) is None
    with app.app_context(), state().sessions() as session:
        assert session.scalars(select(WebSession)).all() == []
    assert [action for action, _ in audit_log(app)] == ["login.succeeded", "logout"]


def test_signing_in_replaces_the_session_cookie(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    before = csrf_token(client)
    planted = client.get_cookie("devspace")
    sign_in(client, "alice", PASSWORD)
    after = client.get_cookie("devspace")
    assert planted is not None
    assert after is not None
    assert after.value != planted.value
    assert csrf_token(client, "/") != before


def test_an_account_is_throttled_after_repeated_failures_even_with_the_right_password(
    app: Flask, client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    for n in range(3):  # the limit in the test settings
        assert sign_in(client, "alice", f"guess {n}", ip=f"192.0.2.{n}").status_code == 401
    response = sign_in(client, "alice", PASSWORD, ip="203.0.113.9")
    assert response.status_code == 429
    assert 60 < int(response.headers["Retry-After"]) <= 901
    page = response.get_data(as_text=True)
    assert "Too many failed sign-ins for this account or from your network." in page
    assert "Try again in 15 minutes." in page
    assert signed_in_as(client) is None
    assert audit_log(app)[-1] == ("login.throttled", {"username": "alice"})
    # The throttle is per account: another account from the same address is unaffected.
    make_user("bob")
    assert sign_in(client, "bob", PASSWORD, ip="203.0.113.9").status_code == 303


def test_a_success_starts_the_accounts_count_afresh(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    for _ in range(2):
        assert sign_in(client, "alice", "guess").status_code == 401
    assert sign_in(client, "alice", PASSWORD).status_code == 303
    for _ in range(2):
        assert sign_in(client, "alice", "guess").status_code == 401
    assert sign_in(client, "alice", PASSWORD).status_code == 303


def test_an_address_is_throttled_across_accounts_and_workers(
    config: Config, make_app: Callable[[Config], Flask]
) -> None:
    # Two apps on one database stand for two gunicorn workers (or replicas).
    worker_a, worker_b = make_app(config).test_client(), make_app(config).test_client()
    for n in range(6):  # the per-address limit in the test settings
        worker = worker_a if n % 2 else worker_b
        assert sign_in(worker, f"user{n}", "guess", ip="192.0.2.50").status_code == 401
    assert sign_in(worker_a, "someone", "guess", ip="192.0.2.50").status_code == 429
    assert sign_in(worker_b, "someone", "guess", ip="192.0.2.50").status_code == 429
    assert sign_in(worker_b, "someone", "guess", ip="192.0.2.51").status_code == 401


def test_attempts_older_than_the_window_are_forgotten(
    app: Flask, client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    for _ in range(3):
        sign_in(client, "alice", "guess")
    with app.app_context(), state().sessions() as session:
        for attempt in session.scalars(select(LoginAttempt)):
            attempt.created_at = attempt.created_at.replace(year=attempt.created_at.year - 1)
        session.commit()
    assert sign_in(client, "alice", PASSWORD).status_code == 303
    with app.app_context(), state().sessions() as session:
        assert len(session.scalars(select(LoginAttempt)).all()) == 1  # the old ones pruned


def test_an_empty_form_asks_for_both_fields(client: FlaskClient) -> None:
    response = client.post("/login", data={"username": "alice", "csrf_token": csrf_token(client)})
    assert response.status_code == 400
    assert "Enter your username and password." in response.get_data(as_text=True)
