"""JSON logs: one line per request with its id, route, status, time and user; and no secret
in any line, from a whole sign-in, token and certificate flow through the real server."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page

from devspace_server import logs, metrics
from devspace_server.auth import passwords
from devspace_server.auth.oauth import CLIENT_ID
from devspace_server.models import User
from testbed.process import Process, free_port, wait_until

from .browser import sign_in
from .conftest import CLIENT_SECRET, IDP_PASSWORD, PASSWORD, TITLE, Serve
from .oauth_flows import REDIRECT_URI, authorize_url, bearer, make_token, pkce
from .test_ssh_certificates import openssh_public
from .upstream_pages import LiveServer
from .upstream_pages import sign_in as upstream_sign_in

SERVER = Path(sys.executable).with_name("devspace-server")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every record logged during the test, as the JSON lines the server writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]


def test_each_request_gets_an_id_on_the_response_and_one_access_line(
    client: FlaskClient, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    first = client.get("/healthz")
    second = client.get("/api/v1/spaces/some-space")
    ids = [first.headers["X-Request-Id"], second.headers["X-Request-Id"]]
    assert len(set(ids)) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)

    lines = access_lines(log_lines())
    assert [line["request_id"] for line in lines] == ids
    health, space = lines
    assert health["method"] == "GET"
    assert health["route"] == "/healthz"
    assert health["status"] == 200
    assert health["user_id"] is None
    assert isinstance(health["duration_ms"], float)
    assert health["level"] == "DEBUG"  # probes pass every few seconds: not worth INFO
    assert space["level"] == "INFO"
    assert space["route"] == "/api/v1/spaces/<name>"
    assert space["path"] == "/api/v1/spaces/some-space"
    assert space["status"] == 401


def test_a_sane_request_id_from_the_proxy_is_kept_and_a_strange_one_replaced(
    client: FlaskClient, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    kept = client.get("/healthz", headers={"X-Request-Id": "edge-4f1c.77:a_b"})
    assert kept.headers["X-Request-Id"] == "edge-4f1c.77:a_b"
    for strange in ("a" * 129, 'x"} {"level":"ERROR', "has space", "ünïcode"):
        answered = client.get("/healthz", headers={"X-Request-Id": strange})
        assert answered.headers["X-Request-Id"] != strange
        assert re.fullmatch(r"[0-9a-f]{32}", answered.headers["X-Request-Id"])
    assert next(line["request_id"] for line in access_lines(log_lines())) == "edge-4f1c.77:a_b"


def test_every_line_logged_inside_a_request_carries_its_id(
    client: FlaskClient, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    response = client.get("/api/v1/test-things/boom")  # logs the unexpected error, then answers
    assert response.status_code == 500
    request_id = response.headers["X-Request-Id"]
    error = next(line for line in log_lines() if line["level"] == "ERROR")
    assert error["request_id"] == request_id
    assert "Traceback" in error["exception"]


def test_the_access_line_names_the_user_of_a_token_or_a_session(
    app: Flask,
    client: FlaskClient,
    make_user: Callable[..., User],
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    alice = make_user("alice")
    client.get("/api/v1/spaces", headers=bearer(make_token(app, alice, "spaces")))
    sign_in(client, "alice", PASSWORD)
    client.get("/")
    by_route = {(line["method"], line["route"]): line for line in access_lines(log_lines())}
    assert by_route[("GET", "/api/v1/spaces")]["user_id"] == alice.id
    assert by_route[("POST", "/login")]["user_id"] == alice.id
    assert by_route[("GET", "/")]["user_id"] == alice.id


def test_token_shaped_strings_and_credentials_are_blanked_in_any_message() -> None:
    secret = "dsa_" + "A1b2" * 11
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "got %s and Authorization: Bearer %s, %s", None, None
    )
    record.args = (secret, "gw-secret-value-1234", "code=abcd1234efgh&state=1")
    line = json.loads(logs.JsonFormatter().format(record))
    assert secret not in line["message"]
    assert "gw-secret-value-1234" not in line["message"]
    assert "abcd1234efgh" not in line["message"]
    assert "dsa_[redacted]" in line["message"]
    assert "state=1" in line["message"]
    text = logs.TextFormatter().format(record)
    assert secret not in text
    assert "gw-secret-value-1234" not in text


# The whole flow through the real server, whose log (gunicorn's and ours) is then searched.


def _csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found, html
    return found.group(1)


def test_no_secret_of_a_sign_in_token_and_certificate_flow_reaches_the_log(
    tmp_path: Path,
) -> None:
    port, log_file = free_port(), tmp_path / "serve.log"
    metrics_token = "metrics-token-for-the-log-test-0123456789"  # noqa: S105 - a test token
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
    env.pop(metrics.MULTIPROC_ENV, None)
    env |= {
        "HOME": str(tmp_path),
        "DEVSPACE_DATA_DIR": str(tmp_path / "data"),
        "DEVSPACE_LOG_LEVEL": "DEBUG",
        "DEVSPACE_METRICS_TOKEN": metrics_token,
    }
    base = f"http://127.0.0.1:{port}"
    process = Process(
        "devspace-server",
        [str(SERVER), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        log_file,
        env=env,
    )
    secrets: dict[str, str] = {"password": PASSWORD, "metrics token": metrics_token}
    try:
        wait_until(
            lambda: requests.get(f"{base}/healthz", timeout=5).ok,
            what="serve",
            timeout=30,
            process=process,
        )
        data = tmp_path / "data"
        secrets["secret key"] = (data / "secret_key").read_text().strip()
        secrets["gateway secret"] = (data / "gateway_secret").read_text().strip()
        subprocess.run(
            [str(SERVER), "create-admin", "--username", "root"],
            input=PASSWORD + "\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        browser = requests.Session()
        page = browser.get(f"{base}/login", timeout=5).text
        form = {"username": "root", "password": PASSWORD, "csrf_token": _csrf(page)}
        assert browser.post(f"{base}/login", data=form, timeout=5).ok
        secrets["session cookie"] = next(iter(browser.cookies.values()))

        keys = pkce()
        secrets["PKCE verifier"] = keys.verifier
        url = base + authorize_url(keys.challenge, scope="spaces ssh")
        consent = browser.get(url, timeout=5)
        assert consent.status_code == 200, consent.text
        decided = browser.post(
            url,
            data={"csrf_token": _csrf(consent.text), "decision": "allow"},
            allow_redirects=False,
            timeout=5,
        )
        code = parse_qs(urlsplit(decided.headers["Location"]).query)["code"][0]
        secrets["authorization code"] = code
        cli = requests.Session()
        redeemed = cli.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": keys.verifier,
            },
            timeout=5,
        ).json()
        secrets["access token"] = redeemed["access_token"]
        secrets["refresh token"] = redeemed["refresh_token"]
        refreshed = cli.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": redeemed["refresh_token"],
                "client_id": CLIENT_ID,
            },
            timeout=5,
        ).json()
        secrets["refreshed access token"] = refreshed["access_token"]
        secrets["refreshed refresh token"] = refreshed["refresh_token"]
        access = {"Authorization": f"Bearer {refreshed['access_token']}"}
        created = cli.post(
            f"{base}/api/v1/tokens",
            json={"name": "ci", "scopes": ["spaces"]},
            headers=access,
            timeout=5,
        )
        assert created.status_code == 201, created.text
        secrets["personal token"] = created.json()["token"]
        assert cli.get(
            f"{base}/api/v1/spaces",
            headers={"Authorization": f"Bearer {secrets['personal token']}"},
            timeout=5,
        ).ok
        key = openssh_public(ed25519.Ed25519PrivateKey.generate())
        issued = cli.post(
            f"{base}/api/v1/ssh/certificates", json={"public_key": key}, headers=access, timeout=5
        )
        assert issued.status_code == 200, issued.text
        gateway = cli.post(
            f"{base}/internal/gateway/principals",
            data={
                "user": "x",
                "key_type": "ssh-ed25519-cert-v01@openssh.com",
                "certificate": "AAAA",
            },
            headers={"Authorization": f"Bearer {secrets['gateway secret']}"},
            timeout=5,
        )
        assert gateway.status_code in (400, 403), gateway.text
        # An upstream provider's answer carries its code in the query string (no provider is
        # configured here, so it is refused, but it is logged as it arrives).
        secrets["upstream code"] = "upstream-code-" + pkce().verifier[:20]
        callback = f"{base}/login/upstream/corp/callback?code={secrets['upstream code']}&state=s"
        assert browser.get(callback, timeout=5).status_code == 404
        # Wrong ones are secrets too: a mistyped password is often nearly the right one.
        secrets["mistyped password"] = PASSWORD + "!"
        wrong = {"username": "root", "password": PASSWORD + "!", "csrf_token": _csrf(page)}
        assert browser.post(f"{base}/login", data=wrong, timeout=5).status_code in (400, 401)
        assert cli.get(
            f"{base}/metrics", headers={"Authorization": f"Bearer {metrics_token}"}, timeout=5
        ).ok
    finally:
        process.stop()

    text = log_file.read_text()
    lines = [line for line in text.splitlines() if line.startswith("{")]
    routes = {json.loads(line).get("route") for line in lines}
    assert {"/login", "/oauth/token", "/api/v1/ssh/certificates", "/metrics"} <= routes, text
    assert "/oauth/authorize" in routes
    leaked = [name for name, secret in secrets.items() if secret and secret in text]
    assert leaked == [], f"in the log: {leaked}"


def test_an_upstream_sign_in_leaves_neither_its_code_nor_the_client_secret_in_the_log(
    serve: Serve, page: Page, live: LiveServer, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    serve()
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if "/callback?" in r.url else None)
    upstream_sign_in(page, live, TITLE, "carol", IDP_PASSWORD)
    (callback,) = callbacks
    code = parse_qs(urlsplit(callback).query)["code"][0]
    # `werkzeug` is the test's own HTTP server (production runs gunicorn, whose access log
    # is off): it prints every raw URL, which is exactly what devspace must not do.
    ours = [line for line in log_lines() if line["logger"] != "werkzeug"]
    text = json.dumps(ours)
    assert code not in text
    assert CLIENT_SECRET not in text
    (line,) = [a for a in access_lines(ours) if a["route"] == "/login/upstream/<name>/callback"]
    assert line["status"] == 303
    assert line["user_id"]
