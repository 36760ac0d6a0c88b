"""A fresh host key encryption key for the settings of a test server or reconciler: neither
starts without one (see `devspace_server.config_secrets.host_key_sealer`)."""

from __future__ import annotations

from pathlib import Path

from devspace_server.host_key_sealing import DATA_DIR_FILE_NAME, new_keys_file_content

VARIABLE = "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS"


def fresh_host_key_encryption(directory: Path | None = None) -> dict[str, str]:
    """The setting of a new random key, to add to a test's settings: the key itself, or, given
    `directory`, `…_FILE` naming a 0600 key file made there as `serve` makes it (for a server
    and a reconciler process that must share the key)."""
    if directory is None:
        return {VARIABLE: new_keys_file_content().decode()}
    path = directory / DATA_DIR_FILE_NAME
    path.write_bytes(new_keys_file_content())
    path.chmod(0o600)
    return {f"{VARIABLE}_FILE": str(path)}
