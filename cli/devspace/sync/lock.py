"""One engine per (space, folder), and what it last did, for `devspace status`.

Both live beside the ancestor (`<state>/sync/<key>.lock`, `<key>.status.json`): two engines
on one folder would each trust an ancestor the other is rewriting, so the second refuses to
start; the status file is rewritten atomically on every change of state.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import filelock

from devspace.sync.errors import StateError, SyncError
from devspace.sync.state import FolderKey, default_state_dir


class SyncLocked(SyncError):
    """Another engine already syncs this folder with this space."""


class FolderLock:
    """The lock that lets one engine at a time sync `key`. Use as a context manager."""

    def __init__(self, key: FolderKey, state_dir: Path | None = None) -> None:
        """The lock for `key` under `state_dir` (default: `default_state_dir()`)."""
        self.key = key
        base = (state_dir or default_state_dir()) / "sync" / key.file_name()
        self.path = base.with_suffix(".lock")
        self.owner = base.with_suffix(".owner")
        self._lock = filelock.FileLock(self.path, timeout=0)

    def acquire(self) -> None:
        """Take the lock. Raises SyncLocked if another engine holds it, StateError if the
        state directory cannot be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except filelock.Timeout:
            raise SyncLocked(self._refusal()) from None
        except OSError as error:
            raise StateError(f"cannot create the sync lock {self.path}: {error}") from error
        with contextlib.suppress(OSError):
            self.owner.write_text(json.dumps({"pid": os.getpid(), "since": time.time()}))

    def _refusal(self) -> str:
        try:
            owner = json.loads(self.owner.read_text())
            who = f" (process {int(owner['pid'])}, since {time.ctime(float(owner['since']))})"
        except (OSError, ValueError, KeyError, TypeError):
            who = ""
        return (
            f"another `devspace sync` is already syncing {self.key.local_root} with "
            f"{self.key.space}:{self.key.remote_root}{who}; stop it before starting another"
        )

    def release(self) -> None:
        """Let another engine start."""
        if self._lock.is_locked:
            with contextlib.suppress(OSError):
                self.owner.unlink()
            self._lock.release()

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def status_path(key: FolderKey, state_dir: Path | None = None) -> Path:
    """Where the engine for `key` writes its status summary."""
    return (state_dir or default_state_dir()) / "sync" / f"{Path(key.file_name()).stem}.status.json"


def write_status(path: Path, summary: dict[str, Any]) -> None:
    """Replace the status summary at `path` atomically; a failure is ignored (it is advice)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".status-")
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(summary, out, indent=2, sort_keys=True)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.remove(temporary)


def read_statuses(state_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every sync status summary under `state_dir` (for `devspace status`), newest first."""
    folder = (state_dir or default_state_dir()) / "sync"
    found = []
    for path in folder.glob("*.status.json"):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text(encoding="utf-8")))
    return sorted(found, key=lambda s: float(s.get("updated", 0)), reverse=True)
