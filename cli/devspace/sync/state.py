"""The ancestor, kept on the laptop per (space, folder) between runs.

One SQLite file per synced folder under the user's state directory
(`<state>/sync/<hash>.sqlite3`): the engine records each applied operation as it goes, so a
crash loses at most the last few records, and a stale ancestor is safe — a path both sides
changed the same way since is recognised by its content, never overwritten. A missing,
unreadable or foreign file means "no ancestor": the planner then deletes nothing and turns
every difference into a conflict. An unreadable file is moved aside, not deleted, so it can
be inspected.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from devspace.sync.errors import StateError
from devspace.sync.snapshot import Ancestor, Entry, Kind, Snapshot, ancestors, is_normal_path

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS folder (
    space TEXT NOT NULL,
    local_root TEXT NOT NULL,
    remote_root TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ancestor (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    local_size INTEGER NOT NULL,
    local_mtime_ns INTEGER NOT NULL,
    local_executable INTEGER,
    local_digest TEXT,
    remote_size INTEGER NOT NULL,
    remote_mtime_ns INTEGER NOT NULL,
    remote_executable INTEGER,
    remote_digest TEXT
) WITHOUT ROWID;
"""
_COLUMNS = (
    "path, kind, target, local_size, local_mtime_ns, local_executable, local_digest, "
    "remote_size, remote_mtime_ns, remote_executable, remote_digest"
)
_BATCH = 500  # parameters in one query (SQLite allows at least 999)
_Row = tuple[str, str, str, int, int, int | None, str | None, int, int, int | None, str | None]


def default_state_dir() -> Path:
    """Where devspace keeps state on this machine (`DEVSPACE_STATE_DIR` overrides it)."""
    override = os.environ.get("DEVSPACE_STATE_DIR")
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "devspace"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "devspace"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "devspace"


@dataclass(frozen=True)
class FolderKey:
    """Which sync an ancestor belongs to: a space, a laptop folder and the pod folder."""

    space: str
    local_root: str
    remote_root: str

    def file_name(self) -> str:
        """A file name that is stable for this key and safe on every file system."""
        digest = hashlib.sha256("\0".join(self.astuple()).encode("utf-8", "surrogateescape"))
        return f"{digest.hexdigest()[:32]}.sqlite3"

    def astuple(self) -> tuple[str, str, str]:
        """The key's parts, in the order they are stored."""
        return (self.space, self.local_root, self.remote_root)


class AncestorStore:
    """The ancestor of one synced folder in its SQLite file. Use as a context manager."""

    def __init__(self, path: Path, key: FolderKey) -> None:
        """A store at `path` for `key`; nothing is opened or created until it is used."""
        self.path = path
        self.key = key
        self.quarantined: Path | None = None  # where an unreadable file was moved, if any
        self._db: sqlite3.Connection | None = None

    @classmethod
    def for_folder(cls, key: FolderKey, state_dir: Path | None = None) -> AncestorStore:
        """The store for `key` under `state_dir` (default: `default_state_dir()`)."""
        return cls((state_dir or default_state_dir()) / "sync" / key.file_name(), key)

    def __enter__(self) -> AncestorStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database file, if open."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def load(self) -> Ancestor:
        """The recorded ancestor; an empty one if there is none or it cannot be trusted.

        An unreadable file is moved aside (see `quarantined`). Never raises for the file's
        contents; raises StateError only if an unreadable file cannot be moved aside.
        """
        if not self.path.exists():
            return Ancestor()
        try:
            db = self._connect()
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                raise ValueError("unknown schema version")
            if db.execute("SELECT space, local_root, remote_root FROM folder").fetchall() != [
                self.key.astuple()
            ]:
                raise ValueError("the file belongs to another folder")
            rows = db.execute(f"SELECT {_COLUMNS} FROM ancestor").fetchall()  # noqa: S608
            return _ancestor(rows)
        except (sqlite3.DatabaseError, ValueError, TypeError, KeyError):
            self._quarantine()
            return Ancestor()

    def within(self, scopes: Collection[str]) -> Ancestor | None:
        """The recorded paths at or below `scopes`, and the directories above them.

        A few index lookups, not a load: the live engine keeps the ancestor here rather than
        in memory (a dict of 100,000 records costs tens of MiB an idle engine would hold).
        None when the file cannot be trusted (a full pass's `load` then decides what to do
        with it); raises nothing.
        """
        if not self.path.exists():
            return Ancestor()
        above = sorted(ancestors(scopes))
        queries: list[tuple[str, tuple[str, ...]]] = []
        for start in range(0, len(above), _BATCH):
            chunk = above[start : start + _BATCH]
            marks = ", ".join("?" * len(chunk))
            queries.append((f"path IN ({marks})", tuple(chunk)))
        for scope in scopes:
            # Everything below `scope` sorts between "scope/" and "scope0" ('0' follows '/'),
            # in SQLite's byte order as in Python's: one range scan of the primary key.
            queries.append(
                ("path = ? OR (path > ? AND path < ?)", (scope, scope + "/", scope + "0"))
            )
        try:
            db = self._connect()
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                return None
            if db.execute("SELECT space, local_root, remote_root FROM folder").fetchall() != [
                self.key.astuple()
            ]:
                return None
            rows: list[tuple[object, ...]] = []
            for where, arguments in queries:
                rows += db.execute(
                    f"SELECT {_COLUMNS} FROM ancestor WHERE {where}",  # noqa: S608
                    arguments,
                ).fetchall()
            return _ancestor(rows)
        except (sqlite3.DatabaseError, ValueError, TypeError, KeyError):
            return None

    def recorded(self) -> bool:
        """Whether any path is recorded (False for a first sync, or a file that cannot be read)."""
        if not self.path.exists():
            return False
        try:
            return self._connect().execute("SELECT 1 FROM ancestor LIMIT 1").fetchone() is not None
        except sqlite3.DatabaseError:
            return False

    def tops(self) -> set[str] | None:
        """The top-level names recorded (one scan of the table); None if unreadable."""
        if not self.path.exists():
            return set()
        try:
            rows = self._connect().execute("SELECT path FROM ancestor WHERE instr(path, '/') = 0")
            return {path for (path,) in rows}
        except sqlite3.DatabaseError:
            return None

    def save(self, ancestor: Ancestor) -> None:
        """Replace the recorded ancestor with `ancestor`, atomically.

        Raises StateError if the file cannot be written.
        """
        self._write(ancestor_rows(ancestor), replace_all=True, forget=())

    def update(self, changes: Mapping[str, tuple[Entry, Entry] | None]) -> None:
        """Record (local, remote) for each path in `changes`, or forget it if None, atomically.

        Raises StateError if the file cannot be written.
        """
        recorded = {p: pair for p, pair in changes.items() if pair is not None}
        forget = [p for p, pair in changes.items() if pair is None]
        self._write(_rows(recorded), replace_all=False, forget=forget)

    def _write(self, rows: Iterable[_Row], *, replace_all: bool, forget: Iterable[str]) -> None:
        try:
            db = self._writable()
            with db:
                db.execute("DELETE FROM folder")
                db.execute("INSERT INTO folder VALUES (?, ?, ?)", self.key.astuple())
                if replace_all:
                    db.execute("DELETE FROM ancestor")
                db.executemany("DELETE FROM ancestor WHERE path = ?", ((p,) for p in forget))
                db.executemany(
                    f"INSERT OR REPLACE INTO ancestor ({_COLUMNS}) "  # noqa: S608
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except (sqlite3.Error, OSError) as error:
            raise StateError(f"cannot record the sync state in {self.path}: {error}") from error

    def _writable(self) -> sqlite3.Connection:
        """The database, created if missing; one of another schema is moved aside first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            version = self._connect().execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError:
            version = None
        if version not in (0, SCHEMA_VERSION):
            self._quarantine()
            version = 0
        db = self._connect()
        if version == 0:
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.commit()
        return db

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(self.path)
            # WAL with NORMAL sync survives a crash of the process; after a power cut the last
            # records may be missing, which a stale ancestor tolerates (module docstring).
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        return self._db

    def _quarantine(self) -> None:
        self.close()
        aside = self.path.with_name(f"{self.path.name}.unreadable-{time.time_ns()}")
        try:
            os.replace(self.path, aside)
            # The journal files belong to the unreadable database, never to a new one.
            for suffix in ("-wal", "-shm"):
                journal = self.path.with_name(self.path.name + suffix)
                if journal.exists():
                    os.replace(journal, aside.with_name(aside.name + suffix))
        except OSError as error:
            raise StateError(
                f"the sync state in {self.path} is unreadable and cannot be moved aside: {error}"
            ) from error
        self.quarantined = aside


def ancestor_rows(ancestor: Ancestor) -> list[_Row]:
    """The rows that store `ancestor`, one per path."""
    return _rows({p: (e, ancestor.remote[p]) for p, e in ancestor.local.items()})


def _rows(pairs: Mapping[str, tuple[Entry, Entry]]) -> list[_Row]:
    def executable(entry: Entry) -> int | None:
        return None if entry.executable is None else int(entry.executable)

    return [
        (
            path,
            mine.kind.value,
            mine.target,
            mine.size,
            mine.mtime_ns,
            executable(mine),
            mine.digest,
            theirs.size,
            theirs.mtime_ns,
            executable(theirs),
            theirs.digest,
        )
        for path, (mine, theirs) in pairs.items()
    ]


def _ancestor(rows: Iterable[tuple[object, ...]]) -> Ancestor:
    """Rows back into an Ancestor. Raises ValueError, TypeError or KeyError for bad rows."""
    local: dict[str, Entry] = {}
    remote: dict[str, Entry] = {}
    for path, kind_value, target, *sides in rows:
        if not isinstance(path, str) or not isinstance(target, str):
            raise TypeError("bad row")
        if not is_normal_path(path):
            raise ValueError(f"not a relative path: {path!r}")
        kind = Kind(kind_value)
        local[path] = _entry(kind, target, sides[:4])
        remote[path] = _entry(kind, target, sides[4:])
    return Ancestor(Snapshot._adopt(local, {}, set(), []), Snapshot._adopt(remote, {}, set(), []))


def _entry(kind: Kind, target: str, columns: list[object]) -> Entry:
    size, mtime, executable, digest = columns
    if not isinstance(size, int) or not isinstance(mtime, int):
        raise TypeError("bad row")
    if executable not in (None, 0, 1) or not (digest is None or isinstance(digest, str)):
        raise TypeError("bad row")
    return Entry(
        kind, size, mtime, None if executable is None else bool(executable), target, digest
    )
