"""What applying a plan did: the operations done, those found stale, and what each side holds.

Shared by the two sides' appliers (`apply` for the laptop, `podwrite` for the pod), so each
records its results the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from devspace.sync.operations import Operation
from devspace.sync.snapshot import Entry, Snapshot

# Called with the number of bytes just copied, for progress displays; may be called from the
# thread that feeds a tar stream.
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Stale:
    """An operation not applied because its side no longer matched the plan (or refused it)."""

    operation: Operation
    reason: str


class Observed:
    """One side's entries as the apply saw them right after each write.

    Starts as the snapshot the plan was made from; every operation done updates it with what
    it wrote (never with a later look, which could take someone else's change for ours).
    """

    def __init__(self, snapshot: Snapshot) -> None:
        """Start from `snapshot`."""
        self.entries: dict[str, Entry] = dict(snapshot.items())

    def set(self, path: str, entry: Entry | None) -> None:
        """Record `entry` at `path` (None: nothing there now)."""
        if entry is None:
            self.entries.pop(path, None)
        else:
            self.entries[path] = entry

    def move(self, path: str, to: str) -> None:
        """Record that the subtree at `path` now lives at `to`."""
        prefix = path + "/"
        moving = {p: e for p, e in self.entries.items() if p == path or p.startswith(prefix)}
        for p in moving:
            del self.entries[p]
        for p, e in moving.items():
            self.entries[to + p[len(path) :]] = e

    def snapshot(self) -> Snapshot:
        """The recorded entries as a snapshot (not checked to be a tree)."""
        return Snapshot(self.entries, check=False)


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` did.

    `local` and `remote` hold each side's entries as observed right after each write (pass
    them to `settled`); `stale` lists what was skipped because the file was not what the plan
    expected — plan again to deal with it.
    """

    done: tuple[Operation, ...]
    stale: tuple[Stale, ...]
    local: Snapshot
    remote: Snapshot

    @property
    def complete(self) -> bool:
        """Whether every operation was applied."""
        return not self.stale


def matches(found: Entry | None, expected: Entry | None) -> bool:
    """Whether `found` is still `expected` (kind, size, mtime, mode, link target)."""
    if found is None or expected is None:
        return found is expected
    return found[:5] == expected[:5]


def describe(found: Entry | None) -> str:
    """`found` in a few words, for a Stale reason."""
    if found is None:
        return "nothing"
    if found.kind.value == "f":
        return f"a file of {found.size} bytes (mtime {found.mtime_ns})"
    return "a directory" if found.kind.value == "d" else f"a link to {found.target!r}"


def stale_reason(path: str, found: Entry | None, expected: Entry | None) -> str:
    """Why an operation at `path` found `found` where the plan expected `expected`."""
    return (
        f"{path!r} changed since the plan: expected {describe(expected)}, found {describe(found)}"
    )


def record_all(observed: Observed, entries: Mapping[str, Entry | None]) -> None:
    """Record several paths at once."""
    for path, entry in entries.items():
        observed.set(path, entry)
