"""Where the CLI keeps its files, and its small settings file (default server and spaces).

Directories come from platformdirs, so each OS gets its usual place; `DEVSPACE_CONFIG_DIR` and
`DEVSPACE_STATE_DIR` override them (tests, and people who keep dotfiles elsewhere). Files are
written atomically: a crash or a second command never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devspace.errors import UsageError

APP = "devspace"


def config_dir() -> Path:
    """The directory for settings and credential files (created private on first write)."""
    override = os.environ.get("DEVSPACE_CONFIG_DIR")
    if override:
        return Path(override)
    import platformdirs  # noqa: PLC0415 - kept off the start-up path of `--help`

    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def state_dir() -> Path:
    """The directory for debug logs and lock files."""
    override = os.environ.get("DEVSPACE_STATE_DIR")
    if override:
        return Path(override)
    import platformdirs  # noqa: PLC0415 - kept off the start-up path of `--help`

    return Path(platformdirs.user_state_dir(APP, appauthor=False))


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by its owner only, and return it.

    On Windows the mode bits mean nothing; the per-user profile directory's ACL protects it.
    """
    path.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        path.chmod(0o700)
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step, the new file readable by its owner only."""
    private_dir(path.parent)
    # mkstemp creates the file 0600 on POSIX, so the secret is never readable by others,
    # not even between creating and renaming it.
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def normalise_server(url: str) -> str:
    """The canonical form of a server URL: scheme and host lower-cased, no trailing slash.

    Raises `UsageError` when it is not an http(s) URL.
    """
    from urllib.parse import urlsplit  # noqa: PLC0415 - cheap, but only needed here

    url = url.strip()
    if "://" not in url:
        url = f"https://{url}"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{url!r} is not a server address: use e.g. https://devspace.example.com")
    path = parts.path.rstrip("/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


@dataclass
class Settings:
    """The settings file: the default server and, per server, the default space."""

    default_server: str | None = None
    default_spaces: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def path() -> Path:
        """Where the settings live."""
        return config_dir() / "config.json"

    @classmethod
    def load(cls) -> Settings:
        """The saved settings, or empty ones. Raises `UsageError` for a broken file."""
        try:
            raw: Any = json.loads(cls.path().read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise UsageError(f"Cannot read {cls.path()}: {exc}. Fix or delete it.") from exc
        if not isinstance(raw, dict):
            raise UsageError(f"{cls.path()} is not a JSON object. Fix or delete it.")
        spaces = raw.get("default_spaces") or {}
        return cls(raw.get("default_server"), {str(k): str(v) for k, v in spaces.items()})

    def save(self) -> None:
        """Write the settings atomically."""
        body = {"default_server": self.default_server, "default_spaces": self.default_spaces}
        write_atomically(self.path(), json.dumps(body, indent=2).encode() + b"\n")
