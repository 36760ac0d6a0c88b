"""`devspace login`: sign in to a server and keep its tokens.

Three ways in: the authorization code flow with PKCE through a loopback redirect (RFC 8252; the
default), the device flow (RFC 8628; `--device`, for machines without a browser), or a personal
access token (`--token`, for automation). The sign-in URL is always printed, as well as opened,
because a browser cannot always be opened from here (SSH sessions, WSL, containers).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import click
import requests

from devspace.api import (
    CLIENT_ID,
    Unreachable,
    fail,
    new_session,
    problem_message,
    send,
    token_credentials,
)
from devspace.certificates import forget
from devspace.commands.common import server_option, which_server
from devspace.config import Settings, normalise_server
from devspace.credentials import Credentials, Store
from devspace.errors import AuthError, UsageError
from devspace.output import progress

DEFAULT_SCOPE = "spaces ssh"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
log = logging.getLogger(__name__)


@click.command()
@server_option
@click.option("--device", is_flag=True, help="Sign in on another device with a code.")
@click.option("--token", metavar="TOKEN", help="Store a personal access token ('-': stdin).")
@click.option("--scope", multiple=True, help="Scopes to ask for (repeatable; default: spaces ssh).")
@click.option("--no-browser", is_flag=True, help="Only print the sign-in address.")
@click.option(
    "--timeout", type=click.IntRange(1), default=600, show_default=True, help="Seconds to wait."
)
def login(
    *,
    server: str | None,
    device: bool,
    token: str | None,
    scope: tuple[str, ...],
    no_browser: bool,
    timeout: int,
) -> None:
    """Sign in to a devspace server (several can be signed in at once)."""
    if device and token:
        raise UsageError("--device and --token are two different ways in: choose one.")
    settings = Settings.load()
    url = normalise_server(server) if server else which_server(None, settings)
    session = new_session()
    wanted = " ".join(" ".join(scope).split()) or DEFAULT_SCOPE
    if token is not None:
        secret = sys.stdin.readline().strip() if token == "-" else token  # noqa: S105
        credentials = _personal(session, url, secret)
    else:
        endpoints = _endpoints(session, url)
        if device:
            tokens = _device_flow(session, endpoints, wanted, timeout)
        else:
            tokens = _loopback_flow(session, endpoints, wanted, timeout, not no_browser)
        username = _me(session, url, tokens["access_token"])["username"]
        credentials = token_credentials(url, tokens, username)
    store = Store()
    store.save(credentials)
    # A certificate from an earlier sign-in may name another user: the next SSH command
    # asks for one of this sign-in's own.
    forget(url)
    if settings.default_server is None:
        settings.default_server = url
        settings.save()
    progress(
        f"Logged in to {url} as {credentials.username} "
        f"(scopes: {credentials.scope or 'none'}; kept in the {store.backend.name})."
    )


def _me(session: requests.Session, server: str, access_token: str) -> dict[str, Any]:
    response = send(
        session,
        "GET",
        f"{server}/api/v1/me",
        headers={"Authorization": f"Bearer {access_token}"},
    )
    if response.status_code == 401:
        raise AuthError(f"{server} refused the token: {problem_message(response)}")
    if not response.ok:
        raise fail(response, server)
    me: dict[str, Any] = response.json()
    return me


def _personal(session: requests.Session, server: str, secret: str) -> Credentials:
    if not secret:
        raise UsageError("The token is empty.")
    me = _me(session, server, secret)
    return Credentials(
        server=server,
        access_token=secret,
        kind="personal",
        scope=" ".join(me.get("scopes", [])),
        username=me["username"],
    )


def _endpoints(session: requests.Session, server: str) -> dict[str, str]:
    """The server's OAuth endpoints, from its metadata (RFC 8414) or the usual paths."""
    defaults = {
        "authorization_endpoint": f"{server}/oauth/authorize",
        "token_endpoint": f"{server}/oauth/token",
        "device_authorization_endpoint": f"{server}/oauth/device_authorization",
    }
    response = send(session, "GET", f"{server}/.well-known/oauth-authorization-server")
    if response.status_code == 404:
        return defaults
    if not response.ok:
        raise fail(response, server)
    found = response.json()
    return {k: str(found.get(k) or v) for k, v in defaults.items()}


def _redeem(session: requests.Session, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
    response = send(session, "POST", endpoint, data={**form, "client_id": CLIENT_ID})
    if not response.ok:
        raise AuthError(f"The server would not sign you in: {problem_message(response)}")
    tokens: dict[str, Any] = response.json()
    return tokens


class _Redirect(HTTPServer):
    """The loopback listener: keeps the first `/callback` request whose `state` matches."""

    def __init__(self, state: str, host: str) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, 0), _CallbackPage)
        self.state = state
        self.answer: dict[str, str] | None = None
        self.arrived = threading.Event()


class _CallbackPage(BaseHTTPRequestHandler):
    server: _Redirect

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query))
        if parts.path != "/callback":
            self._page(404, "Not found.")
        elif not secrets.compare_digest(params.get("state", ""), self.server.state):
            # Not our request (or forged): ignore it and keep waiting for ours.
            self._page(400, "This sign-in does not belong to the waiting devspace command.")
        else:
            ok = "code" in params
            self._page(
                200 if ok else 400,
                "Signed in: you can close this tab and go back to your terminal."
                if ok
                else "Sign-in refused: see your terminal.",
            )
            if self.server.answer is None:
                self.server.answer = params
                self.server.arrived.set()

    def _page(self, status: int, text: str) -> None:
        body = f"<!doctype html><title>devspace</title><p>{text}</p>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("loopback: " + format, *args)


def _listen(state: str) -> _Redirect:
    """A listener on IPv4's loopback, or IPv6's on a machine without IPv4 (RFC 8252 8.3)."""
    try:
        return _Redirect(state, "127.0.0.1")
    except OSError as first:
        try:
            return _Redirect(state, "::1")
        except OSError:
            raise Unreachable(
                f"Cannot listen on a loopback address ({first}): sign in with --device."
            ) from first


def _open_browser(url: str) -> None:
    # Without a display on Linux and the BSDs, webbrowser would start a text browser in this
    # terminal, or fail; elsewhere there is always a desktop to open it on.
    if os.name == "posix" and sys.platform != "darwin":
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return
    import webbrowser  # noqa: PLC0415 - only when a browser is wanted

    try:
        webbrowser.open(url)
    except webbrowser.Error as exc:
        log.debug("could not open a browser: %s", exc)


def _loopback_flow(
    session: requests.Session, endpoints: dict[str, str], scope: str, timeout: int, browse: bool
) -> dict[str, Any]:
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(24)
    listener = _listen(state)
    host = "[::1]" if listener.address_family == socket.AF_INET6 else "127.0.0.1"
    redirect_uri = f"http://{host}:{listener.server_port}/callback"
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    url = f"{endpoints['authorization_endpoint']}?{urlencode(query)}"
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        progress(f"Open this address in a browser to sign in:\n\n    {url}\n")
        if browse:
            _open_browser(url)
        progress("Waiting for the browser...")
        deadline = time.monotonic() + timeout
        # Short waits, so Ctrl-C is noticed on Windows too.
        while not listener.arrived.wait(0.25):
            if time.monotonic() > deadline:
                raise AuthError(f"No sign-in arrived within {timeout} s: run the command again.")
    finally:
        listener.shutdown()
        listener.server_close()
    answer = listener.answer or {}
    if "code" not in answer:
        why = answer.get("error_description") or answer.get("error", "no code")
        raise AuthError(f"Sign-in did not complete: {why}.")
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    return _redeem(session, endpoints["token_endpoint"], form)


def _device_flow(
    session: requests.Session, endpoints: dict[str, str], scope: str, timeout: int
) -> dict[str, Any]:
    response = send(
        session,
        "POST",
        endpoints["device_authorization_endpoint"],
        data={"client_id": CLIENT_ID, "scope": scope},
    )
    if not response.ok:
        raise AuthError(f"The server would not start a device sign-in: {problem_message(response)}")
    started = response.json()
    progress(
        f"On any device, open {started['verification_uri']}\n"
        f"and enter the code: {started['user_code']}\n"
    )
    interval = float(started.get("interval", 5))
    deadline = time.monotonic() + min(float(started.get("expires_in", 600)), timeout)
    form = {"grant_type": DEVICE_GRANT, "device_code": started["device_code"]}
    while True:
        time.sleep(interval)
        if time.monotonic() > deadline:
            raise AuthError("The code expired before it was confirmed: run the command again.")
        polled = send(
            session, "POST", endpoints["token_endpoint"], data={**form, "client_id": CLIENT_ID}
        )
        if polled.ok:
            tokens: dict[str, Any] = polled.json()
            return tokens
        error = _oauth_error(polled)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5  # RFC 8628 section 3.5
            continue
        if error == "access_denied":
            raise AuthError("The sign-in was denied in the browser.")
        if error == "expired_token":
            raise AuthError("The code expired before it was confirmed: run the command again.")
        raise AuthError(f"The server would not sign you in: {problem_message(polled)}")


def _oauth_error(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", ""))
    except ValueError:
        return ""
