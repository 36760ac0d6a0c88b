"""Helpers that use the sign-in pages as a browser would, through Flask's test client."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token from the form on `path` (or the page it redirects to), as a browser
    would have it."""
    html = client.get(path, follow_redirects=True).get_data(as_text=True)
    found = _TOKEN.search(html)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(
    client: FlaskClient,
    username: str,
    password: str,
    *,
    ip: str = "192.0.2.1",
    next_url: str | None = None,
) -> TestResponse:
    """Post the sign-in form (with its CSRF token) from client address `ip`."""
    form = {"username": username, "password": password, "csrf_token": csrf_token(client)}
    if next_url is not None:
        form["next"] = next_url
    return client.post("/login", data=form, environ_base={"REMOTE_ADDR": ip})


def signed_in_as(client: FlaskClient) -> str | None:
    """The username the home page greets, or None if it sends us to sign in."""
    response = client.get("/")
    if response.status_code == 303:
        return None
    found = re.search(r"Signed in as <strong>([^<]+)</strong>", response.get_data(as_text=True))
    assert found, response.get_data(as_text=True)
    return found.group(1)
