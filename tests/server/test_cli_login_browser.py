"""`devspace login`, both ways, with a person at a real browser and a real upstream provider.

The test plays the CLI: it makes the PKCE verifier, listens for the redirect on a loopback
port of its own (a real HTTP listener on 127.0.0.1, on a port the system picks), redeems
the code at `/oauth/token` over HTTP, and calls the API with the token. Or, for the device
flow, it asks for a device code and polls as RFC 8628 says: never faster than `interval`,
five seconds slower after each `slow_down`. Headless Chromium plays the person: devspace's
sign-in page, the provider's form, devspace's consent or device page, a click on Allow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from playwright.sync_api import Page

from devspace_server.auth.oauth import CLIENT_ID

from .conftest import IDP_PASSWORD, TITLE, Serve
from .oauth_flows import authorize_url, bearer, pkce
from .upstream_pages import LiveServer, through_provider

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class Loopback:
    """The CLI's redirect listener: `http://127.0.0.1:<port>/callback`, answering every
    request with a short page and keeping the query parameters of each."""

    def __init__(self) -> None:
        self.answers: list[dict[str, str]] = []
        received = self.answers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/callback":
                    received.append(dict(parse_qsl(parts.query)))
                body = b"<!doctype html><title>devspace</title><p>Back to your terminal."
                self.send_response(200 if parts.path == "/callback" else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reports what matters

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.redirect_uri = f"http://127.0.0.1:{self.server.server_port}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    listener = Loopback()
    yield listener
    listener.stop()


def sign_in_upstream(page: Page, live: LiveServer, login: str) -> None:
    """On devspace's sign-in page: choose the provider, and sign in there if it asks."""
    assert page.url.startswith(f"{live.url}/login?"), page.url
    through_provider(page, live.url, TITLE, login, IDP_PASSWORD)


def consent(
    page: Page, live: LiveServer, loopback: Loopback, scope: str | None, decision: str
) -> tuple[str, dict[str, str], str]:
    """Open the CLI's authorize URL and press `decision` on the consent page (signing in
    first as alice if the browser is not yet). Returns the PKCE verifier, the answer that
    reached the loopback listener (without `state`, checked here) and what the page said."""
    keys = pkce()
    url = authorize_url(keys.challenge, redirect_uri=loopback.redirect_uri, scope=scope)
    page.goto(f"{live.url}{url}")
    if not page.url.startswith(f"{live.url}/oauth/authorize"):
        sign_in_upstream(page, live, "alice")
    assert page.get_by_role("heading", name="Allow access?").is_visible()
    said = page.locator("main").inner_text()
    assert f"(port {urlsplit(loopback.redirect_uri).port})" in said
    page.get_by_role("button", name=decision).click()
    page.wait_for_url(f"{loopback.redirect_uri}?*")
    assert page.locator("p").inner_text() == "Back to your terminal."
    [answer] = loopback.answers
    loopback.answers.clear()
    assert answer.pop("state") == "st-123"
    return keys.verifier, answer, said


def redeem(live: LiveServer, loopback: Loopback, code: str, verifier: str) -> dict[str, Any]:
    """The CLI's token request for `code`; returns the tokens."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "redirect_uri": loopback.redirect_uri,
        "code_verifier": verifier,
    }
    response = requests.post(f"{live.url}/oauth/token", data=form, timeout=10)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def api(live: LiveServer, path: str, token: str) -> requests.Response:
    return requests.get(f"{live.url}/api/v1{path}", headers=bearer(token), timeout=10)


def test_the_loopback_flow_from_sign_in_to_the_api(
    serve: Serve, page: Page, live: LiveServer, loopback: Loopback
) -> None:
    serve()
    keys = pkce()
    url = authorize_url(keys.challenge, redirect_uri=loopback.redirect_uri)
    page.goto(f"{live.url}{url}")
    sign_in_upstream(page, live, "alice")  # at the provider's own form

    # Back on devspace, on the consent page: who asks, on which port, for what.
    assert page.url == f"{live.url}{url}"
    text = page.locator("main").inner_text()
    assert "the devspace command-line tool" in text
    assert f"(port {urlsplit(loopback.redirect_uri).port})" in text
    assert "act as alice" in text
    assert "Create, use and delete your spaces (spaces)" in text
    assert "Get SSH certificates to reach your spaces (ssh)" in text
    assert "(admin)" not in text
    page.get_by_role("button", name="Allow").click()

    page.wait_for_url(f"{loopback.redirect_uri}?*")
    [answer] = loopback.answers
    assert set(answer) == {"code", "state"}
    assert answer["state"] == "st-123"

    tokens = redeem(live, loopback, answer["code"], keys.verifier)
    assert tokens["token_type"] == "Bearer"  # noqa: S105 - a token type, not a secret
    assert tokens["scope"] == "spaces ssh"
    me = api(live, "/me", tokens["access_token"])
    assert me.status_code == 200, me.text
    assert (me.json()["username"], me.json()["scopes"]) == ("alice", ["spaces", "ssh"])


def test_deny_sends_access_denied_to_the_cli(
    serve: Serve, page: Page, live: LiveServer, loopback: Loopback
) -> None:
    serve()
    _verifier, answer, _said = consent(page, live, loopback, None, "Deny")
    assert answer["error"] == "access_denied"
    assert "code" not in answer


def test_an_admin_gets_admin_scope_only_when_asking_for_it(
    serve: Serve, page: Page, live: LiveServer, loopback: Loopback
) -> None:
    serve(admin_group="admins")
    keys = pkce()
    page.goto(f"{live.url}{authorize_url(keys.challenge, redirect_uri=loopback.redirect_uri)}")
    sign_in_upstream(page, live, "carol")  # an admin, through the provider's admins group
    assert "(admin)" not in page.locator("main").inner_text()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{loopback.redirect_uri}?*")
    [answer] = loopback.answers
    loopback.answers.clear()

    plain = redeem(live, loopback, answer["code"], keys.verifier)
    assert plain["scope"] == "spaces ssh"
    me = api(live, "/me", plain["access_token"]).json()
    assert (me["username"], me["role"], me["scopes"]) == ("carol", "admin", ["spaces", "ssh"])
    refused = api(live, "/admin/users", plain["access_token"])
    assert refused.status_code == 403
    assert refused.headers["Content-Type"] == "application/problem+json"

    # Asked for, it is shown on the consent page and granted.
    verifier, answer, said = consent(page, live, loopback, "spaces ssh admin", "Allow")
    assert "Manage users and read the audit log (admins only) (admin)" in said
    admin = redeem(live, loopback, answer["code"], verifier)
    assert admin["scope"] == "spaces ssh admin"
    assert api(live, "/admin/users", admin["access_token"]).status_code == 200


class Poller:
    """The CLI's side of the device flow: polls the token endpoint until it answers with
    tokens or a final error. Waits `interval` between polls; `slow_down` adds 5 s to it."""

    def __init__(self, live: LiveServer, started: dict[str, Any]) -> None:
        self.url = f"{live.url}/oauth/token"
        self.device_code: str = started["device_code"]
        self.interval: int = started["interval"]
        self.deadline = time.monotonic() + started["expires_in"]
        self.errors: list[str] = []

    def __call__(self) -> dict[str, Any]:
        form = {"grant_type": DEVICE_GRANT, "device_code": self.device_code, "client_id": CLIENT_ID}
        while time.monotonic() < self.deadline:
            response = requests.post(self.url, data=form, timeout=10)
            body: dict[str, Any] = response.json()
            if response.status_code == 200:
                return body
            self.errors.append(body["error"])
            if body["error"] == "slow_down":
                self.interval += 5
            elif body["error"] != "authorization_pending":
                return body
            time.sleep(self.interval)
        raise AssertionError(f"no answer before the device code expired: {self.errors}")


def test_the_device_flow_from_sign_in_to_the_api(
    serve: Serve, page: Page, live: LiveServer
) -> None:
    serve()
    response = requests.post(
        f"{live.url}/oauth/device_authorization", data={"client_id": CLIENT_ID}, timeout=10
    )
    assert response.status_code == 200, response.text
    started = response.json()
    assert started["verification_uri"] == f"{live.url}/device"
    poller = Poller(live, started)

    with ThreadPoolExecutor(max_workers=1) as pool:
        polling = pool.submit(poller)
        # The person opens the address the terminal shows, and signs in first.
        page.goto(started["verification_uri"])
        sign_in_upstream(page, live, "alice")
        assert page.url == f"{live.url}/device"
        page.get_by_label("Code shown in your terminal").fill(started["user_code"])
        page.get_by_role("button", name="Continue").click()

        text = page.locator("main").inner_text()
        assert "the devspace command-line tool" in text
        assert f"showing the code {started['user_code']}" in text
        assert "act as alice" in text
        assert "Create, use and delete your spaces (spaces)" in text
        assert "Get SSH certificates to reach your spaces (ssh)" in text
        page.get_by_role("button", name="Allow").click()
        assert page.get_by_role("heading", name="Device connected").is_visible()
        tokens = polling.result(timeout=60)

    assert "access_token" in tokens, tokens
    assert tokens["scope"] == "spaces ssh"
    # It asked before the person allowed it; waiting the interval, it was never told to
    # slow down.
    assert poller.errors
    assert set(poller.errors) == {"authorization_pending"}
    me = api(live, "/me", tokens["access_token"])
    assert (me.json()["username"], me.json()["scopes"]) == ("alice", ["spaces", "ssh"])
