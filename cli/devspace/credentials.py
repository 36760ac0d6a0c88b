"""Credentials per server: in the OS keyring where one works, else in a private file.

`DEVSPACE_CREDENTIALS` chooses: `keyring`, `file`, or `auto` (the default: the keyring when
keyring finds a real backend, else the file). A headless Linux box has no Secret Service, and a
keyring that fails at first use would leave someone logged in nowhere, hence the fallback.

The file backend keeps one JSON file per server in `<config dir>/credentials/` (directory 0700,
files 0600, written atomically). Rotation of refresh tokens is serialised by `rotation_lock`,
a file lock per server: the server revokes the whole sign-in when a refresh token is used twice,
so two commands must never both spend the same one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from devspace.config import config_dir, private_dir, state_dir, write_atomically
from devspace.errors import DevspaceError, UsageError

if TYPE_CHECKING:
    from filelock import BaseFileLock

KEYRING_SERVICE = "devspace"
ENV = "DEVSPACE_CREDENTIALS"
# Refresh this long before the access token expires, so a request never races its expiry.
EXPIRY_MARGIN_SECONDS = 30


@dataclass(frozen=True)
class Credentials:
    """What the CLI holds for one server.

    `kind` is "oauth" (access and refresh tokens from `devspace login`) or "personal" (a
    personal access token given with `--token`, which never refreshes).
    """

    server: str
    access_token: str
    kind: str = "oauth"
    refresh_token: str | None = None
    expires_at: float | None = None
    scope: str = ""
    username: str | None = None

    def expiring(self, now: float | None = None) -> bool:
        """True if the access token expires within the margin (never for unknown expiry)."""
        if self.expires_at is None:
            return False
        return (now or time.time()) + EXPIRY_MARGIN_SECONDS >= self.expires_at

    def to_json(self) -> str:
        """The credentials as JSON, for a backend to keep."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Credentials:
        """Parse what `to_json` wrote. Raises `ValueError` or `TypeError` if it is not that."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        return cls(**raw)


class Backend(Protocol):
    """Where credentials are kept."""

    name: str

    def load(self, server: str) -> str | None:
        """The stored JSON for `server`, or None."""

    def save(self, server: str, text: str) -> None:
        """Store `text` for `server`, replacing what was there."""

    def delete(self, server: str) -> None:
        """Forget `server`'s credentials (no error when there are none)."""


def server_slug(server: str) -> str:
    """A file name for `server`: a hash, as URLs hold characters no file system likes (':' on
    Windows)."""
    return hashlib.sha256(server.encode()).hexdigest()[:32]


class FileBackend:
    """One 0600 JSON file per server in a 0700 directory, replaced atomically."""

    name = "file"

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir() / "credentials"

    def path(self, server: str) -> Path:
        """The file that holds `server`'s credentials."""
        return self.directory / f"{server_slug(server)}.json"

    def load(self, server: str) -> str | None:
        try:
            return self.path(server).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def save(self, server: str, text: str) -> None:
        write_atomically(self.path(server), text.encode())

    def delete(self, server: str) -> None:
        self.path(server).unlink(missing_ok=True)


class KeyringBackend:
    """The OS keyring: macOS Keychain, Windows Credential Manager, Secret Service."""

    name = "keyring"

    def load(self, server: str) -> str | None:
        import keyring  # noqa: PLC0415 - slow to import, and only needed here

        return keyring.get_password(KEYRING_SERVICE, server)

    def save(self, server: str, text: str) -> None:
        import keyring  # noqa: PLC0415

        keyring.set_password(KEYRING_SERVICE, server, text)

    def delete(self, server: str) -> None:
        import keyring  # noqa: PLC0415
        from keyring.errors import PasswordDeleteError  # noqa: PLC0415

        with contextlib.suppress(PasswordDeleteError):
            keyring.delete_password(KEYRING_SERVICE, server)


def _keyring_works() -> bool:
    try:
        import keyring  # noqa: PLC0415
        from keyring.backends import fail  # noqa: PLC0415

        found = keyring.get_keyring()
    except Exception:  # a broken keyring install means "no keyring"
        return False
    # keyring falls back to a backend that raises on every call; priority 0 or less
    # means it found nothing it trusts.
    return not isinstance(found, fail.Keyring) and getattr(found, "priority", 0) > 0


def backend() -> Backend:
    """The backend `DEVSPACE_CREDENTIALS` asks for. Raises `UsageError` for an unknown one."""
    wanted = os.environ.get(ENV, "auto").lower()
    if wanted == "file":
        return FileBackend()
    if wanted == "keyring":
        return KeyringBackend()
    if wanted != "auto":
        raise UsageError(f"{ENV}={wanted!r} is not one of auto, keyring, file.")
    return KeyringBackend() if _keyring_works() else FileBackend()


class Store:
    """Credentials per server, over a backend; every failure is a `DevspaceError`."""

    def __init__(self, chosen: Backend | None = None) -> None:
        self.backend = chosen or backend()

    def load(self, server: str) -> Credentials | None:
        """The credentials for `server`, or None when not logged in there."""
        try:
            text = self.backend.load(server)
        except Exception as exc:
            raise DevspaceError(
                f"Cannot read credentials from the {self.backend.name}: {exc}"
            ) from exc
        if text is None:
            return None
        try:
            return Credentials.from_json(text)
        except (ValueError, TypeError):
            # Unreadable credentials are as good as none: logging in again replaces them.
            return None

    def save(self, credentials: Credentials) -> None:
        """Keep `credentials` for their server."""
        try:
            self.backend.save(credentials.server, credentials.to_json())
        except Exception as exc:
            raise DevspaceError(
                f"Cannot store credentials in the {self.backend.name}: {exc}. "
                f"Set {ENV}=file to keep them in a private file instead."
            ) from exc

    def delete(self, server: str) -> None:
        """Forget the credentials for `server`."""
        try:
            self.backend.delete(server)
        except Exception as exc:
            raise DevspaceError(
                f"Cannot delete credentials from the {self.backend.name}: {exc}"
            ) from exc


def rotation_lock(server: str, timeout: float = 60) -> BaseFileLock:
    """A lock (a file in the state directory) held while `server`'s refresh token rotates."""
    from filelock import FileLock  # noqa: PLC0415 - kept off the start-up path

    locks = private_dir(state_dir() / "locks")
    return FileLock(str(locks / (server_slug(server) + ".lock")), timeout=timeout)
