"""Configuring the key that seals the sidecars' host keys: `serve` makes one and keeps it,
a bad one is refused naming the setting, and `check-config` reports a missing one."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devspace_server import config_check
from devspace_server.config import load_config
from devspace_server.errors import ConfigError
from devspace_server.host_key_sealing import key_id, parse_keys
from devspace_server.reconcile.process import child_environment
from devspace_server.reconcile.settings import load_reconciler_config
from devspace_server.serve import Bind, serve_config

from .conftest import HOST_KEY_ENCRYPTION_KEY

LOOPBACK = Bind("127.0.0.1", 8080)
VARIABLE = "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS"


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


def test_check_config_reports_a_missing_key_but_the_server_starts(
    settings: dict[str, str],
) -> None:
    del settings[VARIABLE]
    assert load_config(settings).host_key_sealer is None
    report = config_check.check(settings)
    (problem,) = report.problems
    assert problem.startswith(f"{VARIABLE} is not set: the sidecars' host private keys are ")
    assert "stored unencrypted in the database" in problem


def test_check_config_reports_a_bad_key_once(settings: dict[str, str]) -> None:
    settings[VARIABLE] = "c2hvcnQ="
    report = config_check.check(settings)
    (problem,) = report.problems
    assert problem.startswith(f"{VARIABLE} line 1 is not a base64 key of 32 bytes")
