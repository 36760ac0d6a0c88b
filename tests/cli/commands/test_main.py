"""The `devspace` entry point: help in a fresh process, lazy imports, and credential backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import keyring
import keyring.backend
import keyring.errors
import pytest

from devspace import credentials
from devspace.entry import COMMANDS, OPTIONS
from devspace.errors import UsageError
from devspace.main import cli

from .conftest import CLI

HELP_IMPORTS = """
import sys
from devspace.main import run
code = run(["--help"])
heavy = sorted(m for m in ("requests", "keyring", "filelock", "platformdirs", "devspace.api",
               "devspace.commands.login", "devspace.commands.spaces") if m in sys.modules)
print("heavy:", heavy)
"""


def test_help_in_a_fresh_process(home: Path) -> None:
    done = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0
    assert done.stderr == ""
    for verb in ("login", "logout", "spaces", "status"):
        assert f"  {verb} " in done.stdout
    assert "Exit codes" in done.stdout
    assert "Traceback" not in done.stdout


def test_help_imports_no_command_and_no_http_library(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.rstrip().endswith("heavy: []")


FAST_PATH = """
import sys
from devspace.entry import main
sys.argv = ["devspace", *sys.argv[1:]]
try:
    main()
except SystemExit as done:
    print("exit:", done.code, "click loaded:", "click" in sys.modules)
"""


@pytest.mark.parametrize("asked", [["--help"], ["-h"], ["--version"]])
def test_help_and_version_answer_without_click_and_as_click_would(
    home: Path, asked: list[str]
) -> None:
    fast = subprocess.run(
        [sys.executable, "-c", FAST_PATH, *asked], capture_output=True, text=True, check=True
    )
    text, _, verdict = fast.stdout.rpartition("exit:")
    assert verdict.strip() == "0 click loaded: False"
    # The same words through click, as `devspace -v --help` (not the fast path) gets them.
    slow = subprocess.run([*CLI, *asked], capture_output=True, text=True, check=False)
    assert (slow.returncode, slow.stdout) == (0, text)


def test_the_static_help_names_every_option_of_the_group() -> None:
    listed = dict(OPTIONS)
    for parameter in cli.params:
        names = ", ".join(parameter.opts + parameter.secondary_opts)
        if isinstance(parameter, click.Option) and parameter.help:
            shown = [name for name in listed if set(name.split(", ")) == set(parameter.opts)]
            assert shown, f"{names} is missing from devspace.entry.OPTIONS"
            assert listed[shown[0]] == parameter.help
    assert len(listed) == len(cli.params) + 1  # and --help, which click adds
    assert set(COMMANDS) == set(cli.list_commands(click.Context(cli)))


def test_each_verb_has_help(home: Path) -> None:
    for verb in COMMANDS:
        done = subprocess.run(
            [*CLI, verb, "--help"], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"Usage: devspace {verb}")


def test_auto_falls_back_to_the_file_without_a_keyring(
    monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv(credentials.ENV, "auto")
    monkeypatch.setattr(credentials, "_keyring_works", lambda: False)
    assert credentials.backend().name == "file"
    monkeypatch.setattr(credentials, "_keyring_works", lambda: True)
    assert credentials.backend().name == "keyring"
    monkeypatch.setenv(credentials.ENV, "vault")
    with pytest.raises(UsageError, match="not one of auto, keyring, file"):
        credentials.backend()


def test_a_run_writes_a_debug_log(home: Path) -> None:
    subprocess.run([*CLI, "spaces"], capture_output=True, text=True, timeout=30, check=False)
    [log] = (home / "state" / "logs").iterdir()
    assert "UsageError" in log.read_text()


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring in memory: no OS keyring can be had on a headless test machine."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


def test_the_keyring_backend_when_a_keyring_works(
    monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    memory = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(memory)
    try:
        monkeypatch.setenv(credentials.ENV, "auto")
        store = credentials.Store()
        assert store.backend.name == "keyring"
        saved = credentials.Credentials(server="https://a.example", access_token="t")  # noqa: S106
        store.save(saved)
        assert store.load("https://a.example") == saved
        assert list(memory.items) == [("devspace", "https://a.example")]
        store.delete("https://a.example")
        store.delete("https://a.example")  # forgetting twice is fine
        assert store.load("https://a.example") is None
        assert not (home / "config" / "credentials").exists()
    finally:
        keyring.set_keyring(previous)
