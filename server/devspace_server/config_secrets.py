"""The configuration's secrets: the session key, the SSH CA key, the host key encryption
keys, and the shared secrets.

Each secret comes from its setting or from the file its `_file` setting names, never from
both, and is refused when short, a placeholder, or reused where another secret belongs:
a server that starts with a guessable secret is worse than one that does not start.

These read settings through a `SettingsSource` (what `config.load_config` reads from), so
they are checked, and their problems reported, exactly as every other setting.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from devspace_server.ca import CertificateAuthority, load_private_key, parse_trusted_keys
from devspace_server.host_key_sealing import KEY_COMMAND as HOST_KEY_COMMAND
from devspace_server.host_key_sealing import HostKeySealer, parse_keys

PREFIX = "DEVSPACE_"
MIN_SECRET_LENGTH = 32
KEY_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
_WEAK_SECRETS = {"changeme", "change-me", "secret", "password", "development", "devspace"}

_T = TypeVar("_T")


class SettingsSource(Protocol):
    """Raw setting values, and a place to report what is wrong with them."""

    def raw(self, key: str) -> str | None:
        """The setting's value from the environment, the file or the defaults; None if unset."""

    def name(self, key: str) -> str:
        """How a message should name the setting (its variable, or its key in the file)."""

    def problem(self, key: str, message: str) -> None:
        """Record that `key` is wrong; `message` follows its name and says what to do."""


def checked(s: SettingsSource, key: str, check: Callable[[str], _T], raw: str) -> _T | None:
    """`check(raw)`, or None with a problem for `key` if it raised `ValueError`."""
    try:
        return check(raw)
    except ValueError as exc:
        s.problem(key, str(exc))
        return None


def _weakness(secret: str, variable: str) -> str | None:
    how = f"set {variable} to the output of `{KEY_COMMAND}`"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"is {len(secret)} characters, too short to be safe: {how}"
    if secret.lower() in _WEAK_SECRETS or len(set(secret)) < 12:
        return f"looks like a placeholder, not a random secret: {how}"
    return None


def secret_problem(secret: str) -> str | None:
    """Why `secret` is not safe as the secret key, or None if it is."""
    variable = f"{PREFIX}SECRET_KEY"
    if not secret:
        return (
            f"is not set: set {variable} to the output of `{KEY_COMMAND}`, "
            f"or {variable}_FILE to a file holding one"
        )
    return _weakness(secret, variable)


def _direct_or_file(s: SettingsSource, key: str) -> tuple[str, str | None]:
    """(the key to blame, the value) of setting `key` or of the file named by `key_file`.

    The value is None (with a problem recorded) if both are set or the file is unreadable,
    "" if neither is set.
    """
    direct, path = s.raw(key), s.raw(f"{key}_file")
    if direct and path:
        s.problem(key, f"and {s.name(f'{key}_file')} are both set: keep one")
        return key, None
    if not path:
        return key, direct or ""
    try:
        return f"{key}_file", Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        s.problem(f"{key}_file", f"names {path}, which cannot be read ({exc.strerror})")
        return f"{key}_file", None


def secret_key(s: SettingsSource) -> str:
    """The session-signing secret key, from `secret_key` or `secret_key_file`; "" if bad."""
    key, value = _direct_or_file(s, "secret_key")
    if value is None:
        return ""
    problem = secret_problem(value)
    if problem:
        s.problem(key, problem)
    return value


def shared_secret(s: SettingsSource, key: str, secret_key: str) -> str | None:
    """An optional secret another component presents (the gateway's, the metrics scraper's).

    From `key` or the file `<key>_file`; None when unset. Short, placeholder or reused
    secrets are reported: whoever holds this one must not also be able to sign sessions.
    """
    blame, value = _direct_or_file(s, key)
    if not value:
        return None
    variable = f"{PREFIX}{key.upper()}"
    problem = _weakness(value, variable)
    if problem is None and value == secret_key:
        problem = (
            f"equals {PREFIX}SECRET_KEY: whoever holds it must not hold that key; "
            f"set {variable} to the output of `{KEY_COMMAND}`"
        )
    if problem:
        s.problem(blame, problem)
    return value


def ssh_ca(s: SettingsSource) -> CertificateAuthority | None:
    """The SSH CA from `ssh_ca_key_file` (and earlier keys still trusted); None if unset."""
    path, previous = s.raw("ssh_ca_key_file"), s.raw("ssh_ca_previous_public_keys")
    if not path:
        if previous:
            s.problem("ssh_ca_previous_public_keys", f"is set without {PREFIX}SSH_CA_KEY_FILE")
        return None
    key = checked(s, "ssh_ca_key_file", load_private_key, path)
    old = checked(s, "ssh_ca_previous_public_keys", parse_trusted_keys, previous or "")
    return CertificateAuthority(key, old or ()) if key else None


HOST_KEY_ENCRYPTION_KEYS = "host_key_encryption_keys"
HOST_KEY_ENCRYPTION_MISSING = (
    "is not set: the server will not store the sidecars' host private keys unencrypted in the "
    "database, where a dump or a backup would give them away; set "
    f"{PREFIX}HOST_KEY_ENCRYPTION_KEYS_FILE to a file holding a key made with "
    f"`{HOST_KEY_COMMAND}` (or {PREFIX}HOST_KEY_ENCRYPTION_KEYS to the key), the "
    "same for the API server and the reconciler; `devspace-server serve` makes one in its data "
    "directory and the Helm chart keeps one in a Secret"
)
"""What follows the setting's name when no key is set (a problem, as a missing secret key)."""
HOST_KEY_ENCRYPTION_UNSET = f"{PREFIX}HOST_KEY_ENCRYPTION_KEYS {HOST_KEY_ENCRYPTION_MISSING}"
"""The whole problem, for a configuration that was built rather than read."""


def host_key_sealer(s: SettingsSource) -> HostKeySealer | None:
    """What seals the sidecars' host private keys in the database, from
    `host_key_encryption_keys` or its `_file` (one key per line, the current first);
    None, with a problem recorded, if neither is set or the keys are bad."""
    blame, value = _direct_or_file(s, HOST_KEY_ENCRYPTION_KEYS)
    if value is None:
        return None  # both set, or the file is unreadable: reported
    if not value and blame == HOST_KEY_ENCRYPTION_KEYS:
        s.problem(blame, HOST_KEY_ENCRYPTION_MISSING)
        return None
    keys = checked(s, blame, parse_keys, value)
    return HostKeySealer(keys) if keys else None
