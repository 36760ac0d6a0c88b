"""The CLI as tests drive it: run in the test's own process through its top-level handler (exit
code, stdout, stderr), and signed in as `devspace login` leaves it."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

import pytest
from flask import Flask
from server.browser import sign_in
from server.oauth_flows import code_login

from devspace.config import Settings
from devspace.credentials import Credentials, Store
from devspace.main import run


@dataclass
class Result:
    """What a run of the CLI did."""

    code: int
    out: str
    err: str


def run_captured(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """`devspace *args` in this process; its output is what `capsys` caught meanwhile."""
    capsys.readouterr()
    code = run(list(args))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def log_in(app: Flask, server: str, username: str, password: str) -> Credentials:
    """Sign `username` in to `app` (served at `server`) through the authorization code flow
    (PKCE; Flask's test client plays the browser) and store the tokens as `devspace login`
    does, this server the CLI's default (in the process's `DEVSPACE_CONFIG_DIR`)."""
    browser = app.test_client()
    signed = sign_in(browser, username, password)
    assert signed.status_code == 303, signed.get_data(as_text=True)
    tokens = code_login(browser, app.test_client())
    credentials = Credentials(
        server=server,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        expires_at=time.time() + tokens["expires_in"],
        scope=tokens["scope"],
        username=username,
    )
    Store().save(credentials)
    Settings(default_server=server).save()
    return credentials


def read_until(process: subprocess.Popen[str], pattern: str, timeout: float = 30) -> re.Match[str]:
    """Read the CLI's stderr line by line until `pattern` matches one (as a person reads the
    terminal for an address or a code); raises AssertionError with what it read otherwise."""
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"{pattern!r} never appeared in: {''.join(seen)}")
