"""Sidecar host private keys, encrypted at rest in the database with AES-256-GCM.

The database holds every sidecar's sshd host private key; a dump or a backup of it must not
let anyone impersonate a sidecar to a user's CLI. So the column holds
`sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, made with a data-encryption key
that lives outside the database (`DEVSPACE_HOST_KEY_ENCRYPTION_KEYS`, or `…_FILE`).

- AES-GCM rather than Fernet: GCM authenticates *associated data*, and the space id is bound
  in as such, so a sealed key copied into another space's row fails to open instead of
  giving that space a host key it should not have. Fernet has no associated data.
- Rotation, as the SSH CA's trusted keys: a list of keys, one per line; the first seals, any
  opens. The key id (a hash of the key, not the key) names which one sealed a row, so a row
  sealed with a key no longer configured is reported as such, not as corruption; the
  reconciler re-seals rows that are not sealed with the first key (`reconcile/dbstore.py`).
- Rows written before encryption existed hold the plain OpenSSH key; they have no `sealed:`
  prefix and are read as they are, then re-sealed by the reconciler.

Nothing here knows about Flask, the database or Kubernetes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED = "sealed:"
VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_BYTES = 4
DATA_DIR_FILE_NAME = "host_key_encryption_keys"
"""`serve`'s key file in the data directory, made on first start."""
KEY_COMMAND = "python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"
# Domain separation: the same key material used elsewhere would give unrelated ids and tags.
_KEY_ID_CONTEXT = b"devspace host key encryption key id\0"
_AAD_CONTEXT = b"devspace sidecar host key v1\0"


class UnsealError(ValueError):
    """A stored host key that cannot be opened; `str()` says why and what to do."""


def parse_keys(text: str) -> tuple[bytes, ...]:
    """The data-encryption keys in `text`: one base64 key of 32 random bytes per line, the
    one to seal with first; blank and `#` lines are ignored, repeats dropped.

    Standard and URL-safe base64 are both accepted (`openssl rand -base64 32` and Helm's
    `randBytes 32` give the first). Raises `ValueError` naming the bad line and what to do.
    """
    keys: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = _decode_key(line)
        if key is None:
            raise ValueError(
                f"line {number} is not a base64 key of {KEY_BYTES} bytes: "
                f"make one with `{KEY_COMMAND}`"
            )
        if len(set(key)) < KEY_BYTES // 4:
            raise ValueError(
                f"line {number} looks like a placeholder, not random bytes: "
                f"make one with `{KEY_COMMAND}`"
            )
        if key not in keys:
            keys.append(key)
    if not keys:
        raise ValueError(f"holds no key: put one per line, made with `{KEY_COMMAND}`")
    return tuple(keys)


def _decode_key(line: str) -> bytes | None:
    standard = line.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def new_keys_file_content() -> bytes:
    """A fresh key file: one random key, for a 0600 file (`serve`'s embedded default)."""
    return base64.b64encode(os.urandom(KEY_BYTES)) + b"\n"


def key_id(key: bytes) -> str:
    """A short public name for `key` (hex of a hash of it): it tells keys apart, reveals
    nothing of the key, and appears in sealed values and in error messages."""
    return hashlib.sha256(_KEY_ID_CONTEXT + key).digest()[:KEY_ID_BYTES].hex()


def is_sealed(stored: str) -> bool:
    """Whether `stored` is a sealed value (of any version), not a plain key from before."""
    return stored.startswith(SEALED)


class HostKeySealer:
    """Seals host keys with the first of its keys and opens what any of them sealed."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self._keys = {key_id(k): AESGCM(k) for k in keys}
        if not self._keys:
            raise ValueError("a HostKeySealer needs at least one key")
        self.current_key_id = next(iter(self._keys))

    def __repr__(self) -> str:
        return f"HostKeySealer(key ids {', '.join(self._keys)})"

    @property
    def current_prefix(self) -> str:
        """What every value sealed with the current key starts with."""
        return f"{SEALED}{VERSION}:{self.current_key_id}:"

    def seal(self, space_id: str, private_key: str) -> str:
        """`private_key` sealed with the current key for the space `space_id` (and no other)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.current_key_id].encrypt(
            nonce, private_key.encode(), _associated_data(space_id)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return self.current_prefix + body

    def needs_resealing(self, stored: str) -> bool:
        """Whether `stored` is plain, or sealed with a key other than the current one."""
        return not stored.startswith(self.current_prefix)

    def open(self, space_id: str, stored: str) -> str:
        """The private key in `stored`, the host key column of space `space_id`.

        A plain value (a row from before encryption) is returned as it is. Raises
        `UnsealError` if it was sealed with a key that is not configured, for another
        space, or is damaged.
        """
        if not is_sealed(stored):
            return stored
        version, _, rest = stored.removeprefix(SEALED).partition(":")
        if version != VERSION:
            raise UnsealError(
                f"its host key is sealed in format {version!r}, which this server does not "
                "know: run the version of devspace-server that wrote it, or a newer one"
            )
        sealed_with, _, body = rest.partition(":")
        aead = self._keys.get(sealed_with)
        if aead is None:
            raise UnsealError(
                f"its host key was sealed with encryption key {sealed_with}, which is not "
                f"among the configured keys ({', '.join(self._keys)}): add that key back to "
                "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS, after the current one, and restart"
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated_data(space_id))
        except (binascii.Error, ValueError, InvalidTag):
            raise UnsealError(
                f"its host key (sealed with encryption key {sealed_with}) does not decrypt: "
                "the row was damaged or copied from another space; delete and recreate the "
                "space to give it a new host key"
            ) from None
        return plain.decode()


def _associated_data(space_id: str) -> bytes:
    return _AAD_CONTEXT + space_id.encode()
