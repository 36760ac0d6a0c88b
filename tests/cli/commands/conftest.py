"""Fixtures for the CLI's commands, run against a real devspace server over HTTP.

The server's fixtures (`live`, `browser`, `settings`, `make_app`, ...) come from
tests/server/conftest.py; here the database is SQLite only, as these tests are about the CLI.

- ``home``: the CLI's config and state directories in a temporary folder, credentials forced
  into the file backend (``DEVSPACE_CREDENTIALS=file``), set in this process's environment.
- ``server``: a devspace app served on ``live`` (public URL = ``live.url``), with the local user
  ``alice`` (password ``PASSWORD``) and a quota of ``SPACES`` spaces; a ``Served``.
- ``signed_in``: alice's tokens from a real authorization code flow (Flask's test client plays
  the browser), stored as the CLI stores them; returns the ``Credentials``.
- ``devspace``: ``devspace(*args)`` runs the CLI in this process through its top-level
  handler and returns a ``Result`` (exit code, stdout, stderr).
- ``spawn``: ``spawn(*args)`` starts the CLI as a separate process with the same environment.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from server.conftest import *  # noqa: F403 - fixtures depend on one another by name
from server.conftest import PASSWORD
from server.upstream_pages import LiveServer

from cli.runner import Result, log_in, run_captured
from devspace.credentials import Credentials
from devspace_server import accounts
from devspace_server.auth import passwords
from devspace_server.config import load_config
from devspace_server.context import state
from devspace_server.models import Role

SPACES = 2
USER = "alice"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about the CLI, not the hash."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024))


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """Overrides the server's two-backend fixture: SQLite is enough to test the CLI."""
    path = tmp_path / "devspace.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cli-home"
    monkeypatch.setenv("DEVSPACE_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("DEVSPACE_STATE_DIR", str(root / "state"))
    monkeypatch.setenv("DEVSPACE_CREDENTIALS", "file")
    monkeypatch.delenv("DEVSPACE_SERVER", raising=False)
    return root


@dataclass
class Served:
    """The server under test: its URL and app."""

    url: str
    app: Flask


@pytest.fixture
def server(
    settings: dict[str, str], live: LiveServer, make_app: Callable[..., Flask]
) -> Iterator[Served]:
    config = load_config(
        settings | {"DEVSPACE_PUBLIC_URL": live.url, "DEVSPACE_QUOTA_DEFAULTS": f"spaces={SPACES}"}
    )
    app = make_app(config)
    with app.app_context(), state().sessions() as session:
        accounts.create_user(session, username=USER, role=Role.USER, password=PASSWORD)
        session.commit()
    live.app = app
    yield Served(live.url, app)
    live.app = None


@pytest.fixture
def signed_in(server: Served, home: Path) -> Credentials:
    return log_in(server.app, server.url, USER, PASSWORD)


@pytest.fixture
def devspace(home: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    return functools.partial(run_captured, capsys)


CLI = [sys.executable, "-c", "from devspace.main import main; main()"]


@pytest.fixture
def spawn(home: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [*CLI, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()
