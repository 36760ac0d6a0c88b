"""Configuring the key that seals the sidecars' host keys: `serve` makes one and keeps it,
a bad one is refused naming the setting, and without one neither the server nor the
reconciler starts (and `check-config` says so)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from devspace_server import config_check
from devspace_server.app import create_app
from devspace_server.config import load_config
from devspace_server.errors import ConfigError
from devspace_server.host_key_sealing import key_id, parse_keys
from devspace_server.reconcile.process import child_environment
from devspace_server.reconcile.settings import ReconcilerConfig, load_reconciler_config
from devspace_server.serve import Bind, serve_config

from .conftest import HOST_KEY_ENCRYPTION_KEY, SECRET

LOOPBACK = Bind("127.0.0.1", 8080)
VARIABLE = "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS"
SERVER = Path(sys.executable).with_name("devspace-server")


def test_serve_makes_a_private_key_file_once_and_hands_it_to_its_reconciler(
    tmp_path: Path,
) -> None:
    env = {"DEVSPACE_DATA_DIR": str(tmp_path / "data")}
    first = serve_config(env, LOOPBACK)
    key_file = tmp_path / "data" / "host_key_encryption_keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    (key,) = parse_keys(key_file.read_text())
    assert first.host_key_sealer is not None
    assert first.host_key_sealer.current_key_id == key_id(key)
    again = serve_config(env, LOOPBACK)
    assert again.host_key_sealer is not None
    assert again.host_key_sealer.current_key_id == key_id(key)
    # `serve --kubeconfig` runs the reconciler as a child process, which must open what the
    # API seals: it is pointed at the same file (and given none of serve's other secrets).
    child = load_reconciler_config(child_environment(env, first))
    assert child.host_key_sealer is not None
    assert child.host_key_sealer.current_key_id == key_id(key)


def test_a_configured_key_wins_and_no_file_is_made(tmp_path: Path) -> None:
    env = {"DEVSPACE_DATA_DIR": str(tmp_path / "data"), VARIABLE: HOST_KEY_ENCRYPTION_KEY}
    config = serve_config(env, LOOPBACK)
    assert config.host_key_sealer is not None
    assert config.host_key_sealer.current_key_id == key_id(parse_keys(HOST_KEY_ENCRYPTION_KEY)[0])
    assert not (tmp_path / "data" / "host_key_encryption_keys").exists()
    assert child_environment(env, config)[VARIABLE] == HOST_KEY_ENCRYPTION_KEY
    assert f"{VARIABLE}_FILE" not in child_environment(env, config)


def test_rotation_lists_the_new_key_first(settings: dict[str, str], tmp_path: Path) -> None:
    new = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    key_file = tmp_path / "keys"
    key_file.write_text(
        f"{new}\n# the old one, until every row is re-sealed\n{settings[VARIABLE]}\n"
    )
    del settings[VARIABLE]
    settings[f"{VARIABLE}_FILE"] = str(key_file)
    sealer = load_config(settings).host_key_sealer
    assert sealer is not None
    assert sealer.current_key_id == key_id(parse_keys(new)[0])
    reconciler = load_reconciler_config(settings).host_key_sealer
    assert reconciler is not None
    assert reconciler.current_key_id == sealer.current_key_id


@pytest.mark.parametrize(
    ("value", "file_content", "expected"),
    [
        ("not a key", None, f"{VARIABLE} line 1 is not a base64 key of 32 bytes"),
        (None, "", f"{VARIABLE}_FILE holds no key"),
        (None, "AAAA\n", f"{VARIABLE}_FILE line 1 is not a base64 key"),
        (
            HOST_KEY_ENCRYPTION_KEY,
            HOST_KEY_ENCRYPTION_KEY,
            f"{VARIABLE} and {VARIABLE}_FILE are both set",
        ),
    ],
)
def test_a_bad_key_setting_is_refused_naming_it(
    settings: dict[str, str],
    tmp_path: Path,
    value: str | None,
    file_content: str | None,
    expected: str,
) -> None:
    del settings[VARIABLE]
    if value is not None:
        settings[VARIABLE] = value
    if file_content is not None:
        (tmp_path / "keys").write_text(file_content)
        settings[f"{VARIABLE}_FILE"] = str(tmp_path / "keys")
    with pytest.raises(ConfigError) as caught:
        load_config(settings)
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems
    with pytest.raises(ConfigError) as caught:
        load_reconciler_config(settings)
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_without_a_key_neither_the_server_nor_the_reconciler_starts(
    settings: dict[str, str],
) -> None:
    """Fail closed: no setting means no server, never host keys stored in the clear."""
    config = load_config(settings)
    del settings[VARIABLE]
    with pytest.raises(ConfigError) as caught:
        load_config(settings)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{VARIABLE} is not set: ")
    # What to set, and that `serve` and the chart set it.
    assert f"set {VARIABLE}_FILE to a file holding a key made with `python3 -c" in problem
    assert "`devspace-server serve` makes one" in problem
    assert "the Helm chart keeps one in a Secret" in problem
    with pytest.raises(ConfigError) as caught:
        load_reconciler_config(settings)
    assert caught.value.problems == [problem]
    # Built by hand, without `load_config`, it is refused all the same.
    keyless = replace(config, host_key_sealer=None)
    with pytest.raises(ConfigError, match=f"^{VARIABLE} is not set: "):
        create_app(keyless)
    with pytest.raises(ConfigError, match=f"^{VARIABLE} is not set: "):
        ReconcilerConfig.from_server_config(keyless)
    assert config_check.check(settings).problems == [problem]


def test_the_server_processes_refuse_to_start_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
    env |= {
        "DEVSPACE_DATA_DIR": str(tmp_path),
        "DEVSPACE_SECRET_KEY": SECRET,
        "DEVSPACE_PUBLIC_URL": "https://devspace.example.com",
    }
    gunicorn_app = subprocess.run(
        [sys.executable, "-c", "import devspace_server.wsgi"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert gunicorn_app.returncode == 4  # gunicorn's "app failed to load": the arbiter stops
    assert gunicorn_app.stderr.startswith(f"devspace-server: {VARIABLE} is not set: ")
    # It stops before it asks the cluster anything: no kubeconfig is needed to see it.
    reconciler = subprocess.run(
        [str(SERVER), "reconcile", "--once"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert reconciler.returncode == 1
    assert reconciler.stderr.startswith(f"Error: {VARIABLE} is not set: ")
    assert "Traceback" not in reconciler.stderr


def test_check_config_reports_a_bad_key_once(settings: dict[str, str]) -> None:
    settings[VARIABLE] = "c2hvcnQ="
    report = config_check.check(settings)
    (problem,) = report.problems
    assert problem.startswith(f"{VARIABLE} line 1 is not a base64 key of 32 bytes")
