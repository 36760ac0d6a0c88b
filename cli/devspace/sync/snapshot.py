"""What sync knows about a tree: `Entry`, `Snapshot`, and the `Ancestor` both sides agreed on.

Paths are relative POSIX strings without a leading or trailing slash (`src/app.py`); the root
itself is never an entry. Both the local scan and the remote listing produce a `Snapshot`, so
the planner compares like with like.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import NamedTuple, TypeVar, overload


class Side(enum.Enum):
    """One end of a sync: the laptop's folder or the pod's."""

    LOCAL = "local"
    REMOTE = "remote"

    # Enum hashes by name in Python code; the planner keys dicts by side in its inner loops.
    # Members are singletons compared by identity, so the identity hash is the same contract.
    __hash__ = object.__hash__

    @property
    def other(self) -> Side:
        """The opposite side."""
        return Side.REMOTE if self is Side.LOCAL else Side.LOCAL


class Kind(enum.Enum):
    """What a path is. Sockets, devices and FIFOs are never entries (see `Snapshot.frozen`)."""

    FILE = "f"
    DIR = "d"
    SYMLINK = "l"


class Entry(NamedTuple):
    """One path's metadata as one side last saw it.

    A NamedTuple rather than a dataclass: scans build one per file, and tuples are the cheapest
    immutable record Python has. Directories carry no metadata (their mtime changes with every
    child and says nothing sync needs), so two directory entries are always equal.

    `executable` is None where the side cannot store the bit (a Windows laptop); `digest` is the
    content hash (`sha256:<hex>`) when someone computed it, else None.

    A side's entries are only ever compared with that side's own entries in the ancestor, so
    each side must describe a file the same way every time: the laptop's as `scan` sees it,
    the pod's as `parse_listing` does (after an upload, record what the listing would show,
    not an SFTP stat with whole seconds).
    """

    kind: Kind
    size: int = 0
    mtime_ns: int = 0
    executable: bool | None = None
    target: str = ""
    digest: str | None = None


DIRECTORY = Entry(Kind.DIR)
_T = TypeVar("_T")


def changed(current: Entry | None, base: Entry | None) -> bool:
    """Whether `current` differs from `base` (the same side's entry in the ancestor).

    Size and mtime decide, as in rsync's quick check; a digest counts only when both have one.
    """
    if current is None or base is None:
        return current is not base
    if current[:5] != base[:5]:
        return True
    return current.digest is not None and base.digest is not None and current.digest != base.digest


def same_content(a: Entry, b: Entry) -> bool:
    """Whether two entries are known to hold the same content (modes aside).

    Files are the same only when their digests are known and equal: equal sizes prove nothing.
    """
    if a.kind is not b.kind:
        return False
    if a.kind is Kind.FILE:
        return a.size == b.size and a.digest is not None and a.digest == b.digest
    return a.target == b.target


def same_bytes_as_before(current: Entry, base: Entry) -> bool:
    """Whether `current` still holds `base`'s content, whatever happened to its mode."""
    if current.kind is not base.kind or current.target != base.target:
        return False
    if current.kind is not Kind.FILE:
        return True
    if current.digest is not None and base.digest is not None:
        return current.digest == base.digest
    return current.size == base.size and current.mtime_ns == base.mtime_ns


def parent(path: str) -> str:
    """The parent of a relative path; `""` (the root) for a top-level name."""
    return path.rpartition("/")[0]


def ancestors(paths: Iterable[str]) -> set[str]:
    """Every proper ancestor directory of `paths` (the root excluded)."""
    result: set[str] = set()
    for path in paths:
        up = parent(path)
        while up and up not in result:
            result.add(up)
            up = parent(up)
    return result


def is_within(path: str, prefixes: Collection[str]) -> bool:
    """Whether `path` is one of `prefixes` or lies below one of them."""
    if not prefixes:
        return False
    while path:
        if path in prefixes:
            return True
        path = parent(path)
    return False


def within(prefixes: Collection[str]) -> Callable[[str], bool]:
    """A fast `is_within(path, prefixes)` for many paths checked against the same prefixes."""
    if not prefixes:
        return lambda path: False
    tops = frozenset(prefixes)
    if len(tops) > 64:
        return lambda path: is_within(path, tops)
    # One C-level call per path: str.startswith takes a tuple.
    starts = tuple(top + "/" for top in tops)
    return lambda path: path in tops or path.startswith(starts)


def tree_order(path: str) -> str:
    """A sort key putting parents before children and siblings' subtrees together.

    Sorting by the key equals sorting by path components: NUL sorts below every character a
    name can hold, so `a/b` comes right after `a` and before `a-b`.
    """
    return path.replace("/", "\0")


def is_normal_path(path: str) -> bool:
    """Whether `path` is a key a snapshot may hold: relative, POSIX, no `.`/`..`/empty parts."""
    if not path or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


class Snapshot(Mapping[str, Entry]):
    """An immutable tree: normalized relative path -> `Entry`.

    Besides the entries it records what exists on that side but is not represented, so the
    planner leaves it alone instead of taking its absence for a deletion:

    - `frozen`: path -> reason, for things that exist but are not synced (a symlink leading
      out of the root, a socket, an unreadable directory, a name sync refuses). They are not
      entries. Nothing at or below a frozen path is touched on either side; these are
      reported to the user.
    - `ignored`: paths that the ignore rules exclude (the top of each ignored subtree only).
      Treated like frozen, silently.
    - `rejected`: (name, reason) for names that cannot even be addressed (`..`, absolute
      paths in a remote listing). Reported; nothing can be done with them.
    """

    __slots__ = ("_entries", "frozen", "ignored", "rejected")

    _entries: dict[str, Entry]
    frozen: Mapping[str, str]
    ignored: frozenset[str]
    rejected: tuple[tuple[str, str], ...]

    def __init__(
        self,
        entries: Mapping[str, Entry] | Iterable[tuple[str, Entry]] = (),
        *,
        frozen: Mapping[str, str] | None = None,
        ignored: Iterable[str] = (),
        rejected: Iterable[tuple[str, str]] = (),
        check: bool = True,
    ) -> None:
        """Build a snapshot; with `check`, validate that it is a tree.

        Raises ValueError if a path is not normal or an entry's parent is not a directory in
        the snapshot.
        """
        self._entries = dict(entries)
        self.frozen = MappingProxyType(dict(frozen or {}))
        self.ignored = frozenset(ignored)
        self.rejected = tuple(rejected)
        if check:
            self._check_tree()

    @classmethod
    def _adopt(
        cls,
        entries: dict[str, Entry],
        frozen: dict[str, str],
        ignored: set[str],
        rejected: list[tuple[str, str]],
    ) -> Snapshot:
        """Wrap containers that a scan built and will not touch again (no copy, no check)."""
        snapshot = cls.__new__(cls)
        snapshot._entries = entries
        snapshot.frozen = MappingProxyType(frozen)
        snapshot.ignored = frozenset(ignored)
        snapshot.rejected = tuple(rejected)
        return snapshot

    def _check_tree(self) -> None:
        for path in [*self._entries, *self.frozen, *self.ignored]:
            if not is_normal_path(path) or (path in self._entries and "\\" in path):
                raise ValueError(f"not a normalized relative path: {path!r}")
            up = parent(path)
            if up and self._entries.get(up, None) != DIRECTORY:
                raise ValueError(f"{path!r} is in the snapshot but its parent is not a directory")

    def __getitem__(self, path: str) -> Entry:
        return self._entries[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    @overload
    def get(self, path: str, /) -> Entry | None: ...
    @overload
    def get(self, path: str, default: Entry | _T, /) -> Entry | _T: ...
    def get(self, path: str, default: object = None, /) -> object:
        # Mapping's generic get goes through __getitem__ and an exception; the planner calls
        # this a few times per path.
        return self._entries.get(path, default)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return (
            self._entries == other._entries
            and self.frozen == other.frozen
            and self.ignored == other.ignored
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Snapshot({len(self._entries)} entries, {len(self.frozen)} frozen)"

    @property
    def untouchable(self) -> frozenset[str]:
        """Frozen and ignored paths together: what the planner must not touch below."""
        return self.ignored | self.frozen.keys()

    def with_digests(self, digests: Mapping[str, str]) -> Snapshot:
        """A copy whose files listed in `digests` carry that content hash.

        Raises KeyError for a path that is not a file in this snapshot.
        """
        entries = dict(self._entries)
        for path, digest in digests.items():
            entry = entries[path]
            if entry.kind is not Kind.FILE:
                raise KeyError(path)
            entries[path] = entry._replace(digest=digest)
        return Snapshot._adopt(entries, dict(self.frozen), set(self.ignored), list(self.rejected))

    def moved(self, renames: Mapping[str, str]) -> Snapshot:
        """A copy with each subtree `old` in `renames` moved to `renames[old]`."""

        def relocate(path: str) -> str:
            prefix = path
            while prefix:
                destination = renames.get(prefix)
                if destination is not None:
                    return destination + path[len(prefix) :]
                prefix = parent(prefix)
            return path

        return Snapshot._adopt(
            {relocate(p): e for p, e in self._entries.items()},
            {relocate(p): reason for p, reason in self.frozen.items()},
            {relocate(p) for p in self.ignored},
            list(self.rejected),
        )


class Ancestor:
    """The last state both sides agreed on, as each side's entries for every agreed path.

    Each side keeps its own view because the same content can look different on each: mtimes
    lose precision over SFTP, Windows has no executable bit. A path is in the ancestor iff both
    sides held it with the same content after a sync; the two views therefore have the same
    paths and kinds.
    """

    __slots__ = ("local", "remote")

    def __init__(self, local: Snapshot | None = None, remote: Snapshot | None = None) -> None:
        """Pair two views of the agreed state.

        Raises ValueError if they do not hold the same paths with the same kinds.
        """
        self.local = local if local is not None else Snapshot()
        self.remote = remote if remote is not None else Snapshot()
        if self.local.keys() != self.remote.keys():
            raise ValueError("the two views of an ancestor must hold the same paths")
        for path, entry in self.local.items():
            if self.remote[path].kind is not entry.kind:
                raise ValueError(f"the two views of an ancestor disagree on what {path!r} is")

    def __len__(self) -> int:
        return len(self.local)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ancestor):
            return NotImplemented
        return self.local == other.local and self.remote == other.remote

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Ancestor({len(self.local)} paths)"

    def view(self, side: Side) -> Snapshot:
        """The entries `side` had when both last agreed."""
        return self.local if side is Side.LOCAL else self.remote

    def settled(self, paths: Iterable[str], local: Snapshot, remote: Snapshot) -> Ancestor:
        """A copy recording each of `paths` as `local` and `remote` now hold it.

        Pass what the apply observed right after each write, never a later rescan: a change
        made in between would be recorded as agreed and never synced. A path whose two sides
        are not known to hold the same content is forgotten, which is always safe.
        """
        changes: dict[str, tuple[Entry, Entry] | None] = {}
        for path in paths:
            mine, theirs = local.get(path), remote.get(path)
            if mine is not None and theirs is not None and _agree(mine, theirs):
                changes[path] = (mine, theirs)
            else:
                changes[path] = None
        return self.updated(changes)

    def updated(self, changes: Mapping[str, tuple[Entry, Entry] | None]) -> Ancestor:
        """A copy with each path in `changes` recorded as (local, remote), or forgotten if None.

        Raises ValueError if a recorded pair disagrees on the kind of entry.
        """
        local = dict(self.local.items())
        remote = dict(self.remote.items())
        for path, pair in changes.items():
            if pair is None:
                local.pop(path, None)
                remote.pop(path, None)
            else:
                local[path], remote[path] = pair
        # The ancestor need not be a tree: a partly applied pass may record a child whose
        # parent's record is stale. The planner never relies on it being one.
        return Ancestor(
            Snapshot._adopt(local, {}, set(), []),
            Snapshot._adopt(remote, {}, set(), []),
        )


def _agree(a: Entry, b: Entry) -> bool:
    if a.kind is not b.kind or a.target != b.target:
        return False
    if a.kind is not Kind.FILE:
        return True
    if a.digest is not None and b.digest is not None:
        return a.digest == b.digest
    return a.size == b.size
