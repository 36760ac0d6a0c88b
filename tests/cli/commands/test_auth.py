"""Credentials against the real server: where they are kept, refresh under contention, logout
revoking, personal tokens, and the exit codes of each way of not being let in."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from server.oauth_flows import make_token
from sqlalchemy import select

from devspace.credentials import Credentials, FileBackend, Store, rotation_lock
from devspace_server.context import state
from devspace_server.models import ApiToken, AuditEvent, TokenKind

from .conftest import Result, Served

Devspace = Callable[..., Result]
Spawn = Callable[..., subprocess.Popen[str]]


def me(server: Served, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(f"{server.url}/api/v1/me", headers=headers, timeout=10).status_code


def audit_actions(server: Served) -> list[str]:
    with server.app.app_context(), state().sessions() as session:
        return list(session.scalars(select(AuditEvent.action)).all())


@pytest.mark.skipif(os.name != "posix", reason="mode bits are POSIX's")
def test_the_file_backend_is_private_and_written_whole(signed_in: Credentials, home: Path) -> None:
    path = FileBackend().path(signed_in.server)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["refresh_token"] == signed_in.refresh_token
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_commands_refreshing_at_once_all_keep_working(
    signed_in: Credentials, server: Served, spawn: Spawn
) -> None:
    # An access token about to expire: each command refreshes before its request.
    Store().save(replace(signed_in, expires_at=0))
    # Holding the rotation lock lines them all up at the refresh, so they race for it at once
    # when it is let go; and proves that none refreshes without it.
    with rotation_lock(signed_in.server):
        runs = [spawn("spaces", "list", "-o", "json") for _ in range(4)]
        time.sleep(2)
        assert [p.poll() for p in runs] == [None] * 4
        assert Store().load(signed_in.server) == replace(signed_in, expires_at=0)
    for process in runs:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert json.loads(out) == []
    # Exactly one rotation: the second command used what the first stored.
    rotated = Store().load(signed_in.server)
    assert rotated is not None
    assert rotated.refresh_token != signed_in.refresh_token
    assert "oauth.refresh_token_replayed" not in audit_actions(server)
    assert me(server, rotated.access_token) == 200
    with server.app.app_context(), state().sessions() as session:
        refresh_tokens = session.scalars(
            select(ApiToken).where(ApiToken.kind == TokenKind.REFRESH)
        ).all()
    # The sign-in's first refresh token, rotated once, and the live one it was rotated into.
    states = sorted((t.rotated_at is None, t.revoked_at is None) for t in refresh_tokens)
    assert states == [(False, False), (True, True)]


def test_a_refused_access_token_is_refreshed_once(
    signed_in: Credentials, server: Served, devspace: Devspace
) -> None:
    # The server no longer knows the access token (as after it expired early).
    Store().save(replace(signed_in, access_token="dsa_not-a-real-token"))  # noqa: S106
    assert devspace("spaces").code == 0
    assert "oauth.refresh_token_replayed" not in audit_actions(server)


def test_logout_revokes_the_sign_in(
    signed_in: Credentials, server: Served, devspace: Devspace
) -> None:
    assert me(server, signed_in.access_token) == 200
    out = devspace("logout")
    assert out.code == 0, out.err
    assert "its tokens are revoked" in out.err
    assert me(server, signed_in.access_token) == 401
    assert Store().load(signed_in.server) is None
    after = devspace("spaces", "--server", server.url)
    assert after.code == 3
    assert "not logged in" in after.err
    assert "devspace login --server" in after.err


def test_a_revoked_sign_in_exits_3(
    signed_in: Credentials, server: Served, devspace: Devspace
) -> None:
    requests.post(
        f"{server.url}/oauth/revoke",
        data={"token": signed_in.refresh_token, "client_id": "devspace-cli"},
        timeout=10,
    ).raise_for_status()
    refused = devspace("spaces")
    assert refused.code == 3
    assert "sign-in to" in refused.err
    assert "has ended" in refused.err
    assert "devspace login" in refused.err


def test_a_personal_token(server: Served, devspace: Devspace) -> None:
    with server.app.app_context(), state().sessions() as session:
        from devspace_server.models import User  # noqa: PLC0415

        alice = session.scalars(select(User)).one()
        session.expunge(alice)
    token = make_token(server.app, alice, "spaces", kind=TokenKind.PERSONAL)
    bad = devspace("login", "--server", server.url, "--token", "dsp_wrong")
    assert bad.code == 3
    logged = devspace("login", "--server", server.url, "--token", token)
    assert logged.code == 0, logged.err
    assert "as alice (scopes: spaces; kept in the file)" in logged.err
    assert devspace("spaces").code == 0
    assert devspace("logout").code == 0
    assert me(server, token) == 200  # a personal token outlives logout
    with server.app.app_context(), state().sessions() as session:
        assert session.scalars(select(ApiToken.revoked_at)).all() == [None]


def test_not_logged_in_exits_3(devspace: Devspace, server: Served) -> None:
    result = devspace("spaces", "--server", server.url)
    assert result.code == 3
    assert result.err == (
        f"devspace: error: You are not logged in to {server.url}: run "
        f"`devspace login --server {server.url}`.\n"
    )


def test_an_unreachable_server_exits_5(devspace: Devspace, home: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{port}"
        Store().save(Credentials(server=url, access_token="x"))  # noqa: S106
        result = devspace("spaces", "--server", url)
    assert result.code == 5
    assert result.err.startswith(f"devspace: error: Cannot reach {url}/api/v1/spaces: ")
    assert "Check the server address and your network." in result.err
    assert "Traceback" not in result.err


def test_usage_errors_exit_2(devspace: Devspace) -> None:
    assert devspace("spaces", "create", "x").code == 2  # --image is required
    assert devspace("no-such-verb").code == 2
    assert devspace("spaces", "--server", "ftp://x").code == 2
    both = devspace("login", "--server", "http://x", "--device", "--token", "t")
    assert both.code == 2
    assert "choose one" in both.err


def test_verbose_shows_the_traceback_and_debug_lines(devspace: Devspace, home: Path) -> None:
    url = "http://127.0.0.1:9"  # the discard port: nothing listens there
    Store().save(Credentials(server=url, access_token="x"))  # noqa: S106
    result = devspace("--verbose", "spaces", "--server", url)
    assert result.code == 5
    assert f"debug: GET {url}/api/v1/spaces" in result.err
    assert "Traceback" in result.err


def test_logout_from_an_unreachable_server_still_forgets(devspace: Devspace, home: Path) -> None:
    url = "http://127.0.0.1:9"
    Store().save(Credentials(server=url, access_token="a", refresh_token="r"))  # noqa: S106
    result = devspace("logout", "--server", url)
    assert result.code == 0
    assert "the server could not be told" in result.err
    assert Store().load(url) is None
