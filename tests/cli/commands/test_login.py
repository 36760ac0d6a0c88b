"""`devspace login` through both OAuth flows, with headless Chromium as the person.

The CLI runs as its own process (`--no-browser`: it only prints the address); the test reads
the address or the code from its stderr, as a person reads the terminal, and completes the
sign-in in the browser: devspace's sign-in form, then Allow.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page
from server.conftest import PASSWORD
from server.upstream_pages import sign_in_and_allow

from cli.runner import read_until
from devspace.config import Settings
from devspace.credentials import Store

from .conftest import USER, Result, Served

Spawn = Callable[..., subprocess.Popen[str]]


def finished(process: subprocess.Popen[str]) -> str:
    _out, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    return rest


def test_login_in_the_browser(server: Served, home: Path, page: Page, spawn: Spawn) -> None:
    login = spawn("login", "--server", server.url, "--no-browser")
    url = read_until(login, r"(http://\S+/oauth/authorize\?\S+)").group(1)
    assert "code_challenge_method=S256" in url
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in url
    page.goto(url)
    sign_in_and_allow(page, USER, PASSWORD)
    page.wait_for_url("http://127.0.0.1:*/callback?*")
    assert "go back to your terminal" in page.locator("p").inner_text()
    said = finished(login)
    assert f"Logged in to {server.url} as alice (scopes: spaces ssh; kept in the file)" in said

    stored = Store().load(server.url)
    assert stored is not None
    assert stored.refresh_token
    assert (stored.username, stored.kind) == ("alice", "oauth")
    assert Settings.load().default_server == server.url


def test_login_with_a_device_code(
    server: Served, home: Path, page: Page, spawn: Spawn, devspace: Callable[..., Result]
) -> None:
    login = spawn("login", "--server", server.url, "--device", "--scope", "spaces")
    address = read_until(login, r"open (\S+)").group(1)
    code = read_until(login, r"enter the code: (\S+)").group(1)
    assert address == f"{server.url}/device"
    page.goto(address)
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Code shown in your terminal").fill(code)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Allow").click()
    assert page.get_by_role("heading", name="Device connected").is_visible()
    assert "as alice (scopes: spaces;" in finished(login)
    assert devspace("spaces").code == 0


def test_a_state_that_does_not_match_is_ignored(
    server: Served, home: Path, page: Page, spawn: Spawn
) -> None:
    login = spawn("login", "--server", server.url, "--no-browser", "--timeout", "3")
    url = read_until(login, r"(http://\S+/oauth/authorize\?\S+)").group(1)
    port = re.search(r"127.0.0.1%3A(\d+)", url)
    assert port
    forged = page.goto(f"http://127.0.0.1:{port.group(1)}/callback?code=x&state=forged")
    assert forged is not None
    assert forged.status == 400
    _out, err = login.communicate(timeout=30)
    assert login.returncode == 3
    assert "No sign-in arrived within 3 s" in err
    assert Store().load(server.url) is None


def test_denying_in_the_browser_exits_3(
    server: Served, home: Path, page: Page, spawn: Spawn
) -> None:
    login = spawn("login", "--server", server.url, "--no-browser")
    page.goto(read_until(login, r"(http://\S+/oauth/authorize\?\S+)").group(1))
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url("http://127.0.0.1:*/callback?*")
    _out, err = login.communicate(timeout=30)
    assert login.returncode == 3
    assert err.splitlines()[-1].startswith("devspace: error: Sign-in did not complete: ")
    assert Store().load(server.url) is None
