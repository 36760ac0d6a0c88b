"""The planner's output: operations to apply, and what it reports (conflicts, skips, brakes).

Every operation names the side it writes and carries the entries the planner saw, so `apply`
can check before it writes that the file is still what the plan was made from (and re-plan if
not). Operations are listed in an order that can be applied as is: conflict copies moved
aside first, then deletes children before parents, then creations parents before children.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from devspace.sync.snapshot import Entry, Kind, Side, Snapshot, tree_order


@dataclass(frozen=True, slots=True)
class Upload:
    """Copy the laptop's file at `path` to the pod, replacing `replaces` (None: nothing there).

    `source` is the local file as planned; `source.executable` None means the laptop cannot
    tell (Windows): keep the pod's mode, or 0644 for a new file.
    """

    path: str
    source: Entry
    replaces: Entry | None

    @property
    def side(self) -> Side:
        """The side this operation writes."""
        return Side.REMOTE


@dataclass(frozen=True, slots=True)
class Download:
    """Copy the pod's file at `path` to the laptop, replacing `replaces` (None: nothing there)."""

    path: str
    source: Entry
    replaces: Entry | None

    @property
    def side(self) -> Side:
        """The side this operation writes."""
        return Side.LOCAL


@dataclass(frozen=True, slots=True)
class MakeDir:
    """Create a directory at `path` on `side`, replacing `replaces` (a file or link), if any."""

    side: Side
    path: str
    replaces: Entry | None


@dataclass(frozen=True, slots=True)
class MakeSymlink:
    """Create a symlink at `path` on `side` pointing to `target`, replacing `replaces`."""

    side: Side
    path: str
    target: str
    replaces: Entry | None


@dataclass(frozen=True, slots=True)
class SetMode:
    """Set or clear the executable bit of the file `entry` at `path` on `side`."""

    side: Side
    path: str
    executable: bool
    entry: Entry


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove `entry` at `path` on `side` (a directory is empty by the time this runs)."""

    side: Side
    path: str
    entry: Entry


@dataclass(frozen=True, slots=True)
class MoveAside:
    """Rename `path` on `side` to `to` (a whole subtree for a directory) to keep a conflict's
    losing version; later operations copy it to the other side like any new path."""

    side: Side
    path: str
    to: str
    entry: Entry


Operation = Upload | Download | MakeDir | MakeSymlink | SetMode | Delete | MoveAside


@dataclass(frozen=True, slots=True)
class Conflict:
    """Both sides changed `path` differently.

    `kept` is the side whose version stays at `path`; the other version is at `copy` on both
    sides once the plan is applied. Both are None when no copy could be made (the name would
    be too long, or one-way rules forbid it): then both sides are left as they are and the
    path is reported again on every pass until the user resolves it.
    """

    path: str
    kept: Side | None
    copy: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path left alone on `side`, with the reason to show the user."""

    path: str
    side: Side
    reason: str


class BrakeReason(enum.Enum):
    """Why a plan must not run without the user's word."""

    EMPTY_ROOT = "empty-root"
    MASS_DELETE = "mass-delete"


@dataclass(frozen=True, slots=True)
class Brake:
    """A safety stop: applying the plan would delete `deletes` files on `side`."""

    reason: BrakeReason
    side: Side
    deletes: int
    message: str


@dataclass(frozen=True, slots=True)
class SafetyLimits:
    """When a pass deletes so much that it must ask first.

    A side brakes when the pass would delete more than `max_deletes` of its files (links
    count, directories do not), or at least `min_deletes` and more than `max_fraction` of them.
    """

    max_deletes: int = 2000
    max_fraction: float = 0.5
    min_deletes: int = 100

    def exceeded(self, deletes: int, files: int) -> bool:
        """Whether deleting `deletes` out of `files` needs the user's confirmation."""
        if deletes > self.max_deletes:
            return True
        return deletes >= self.min_deletes and deletes > self.max_fraction * files


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What one pass will do and what it tells the user.

    `agreed` lists paths where both sides already match but the ancestor is stale (the same
    change made on both sides, or a path deleted on both): record them, copy nothing. While
    `brakes` is not empty the plan must not be applied.
    """

    operations: tuple[Operation, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    agreed: tuple[str, ...] = ()
    brakes: tuple[Brake, ...] = ()

    @property
    def stopped(self) -> bool:
        """Whether a brake holds this plan until the user confirms."""
        return bool(self.brakes)

    @property
    def is_empty(self) -> bool:
        """Whether there is nothing to write and nothing to record."""
        return not self.operations and not self.agreed

    def deletes(self, side: Side) -> int:
        """How many files and links the plan deletes on `side`."""
        return sum(
            1
            for op in self.operations
            if isinstance(op, Delete) and op.side is side and op.entry.kind is not Kind.DIR
        )

    @property
    def touched(self) -> frozenset[str]:
        """Every path whose ancestor record changes once the plan is applied."""
        paths = {op.path for op in self.operations}
        paths.update(op.to for op in self.operations if isinstance(op, MoveAside))
        paths.update(self.agreed)
        return frozenset(paths)


def operation_for(
    side: Side,
    path: str,
    current: Entry | None,
    target: Entry | None,
    *,
    holds_bytes: bool,
    source: Entry | None,
) -> Operation | None:
    """The operation that turns `current` into `target` at `path` on `side`; None if none.

    `holds_bytes` says this side already holds the target file's content (only its mode may
    lag behind); otherwise a file is copied from the other side, whose entry is `source`.
    """
    if target is None:
        return None if current is None else Delete(side, path, current)
    if current is not None and current.kind is target.kind:
        if target.kind is not Kind.FILE:
            if current.target == target.target:
                return None
        elif holds_bytes:
            if mode_differs(current, target):
                return SetMode(side, path, bool(target.executable), current)
            return None
    return _creation(side, path, current, target, source)


def _creation(
    side: Side, path: str, current: Entry | None, target: Entry, source: Entry | None
) -> Operation:
    if target.kind is Kind.DIR:
        return MakeDir(side, path, current)
    if target.kind is Kind.SYMLINK:
        return MakeSymlink(side, path, target.target, current)
    if source is None:  # pragma: no cover - the planner always has the file it copies
        raise ValueError(f"nothing to copy to {path!r}")
    return Upload(path, source, current) if side is Side.REMOTE else Download(path, source, current)


def mode_differs(current: Entry, target: Entry) -> bool:
    """Whether both executable bits are known and differ."""
    return (
        current.executable is not None
        and target.executable is not None
        and current.executable != target.executable
    )


def in_apply_order(operations: Iterable[Operation]) -> list[Operation]:
    """`operations` in an order that can be applied one after the other.

    Conflict copies are moved aside first (their destinations are fresh names), then deletes
    run children before parents (a directory is empty when its turn comes), then creations
    and replacements parents before children.
    """
    moves: list[Operation] = []
    deletes: list[Operation] = []
    writes: list[Operation] = []
    for op in operations:
        (
            moves if isinstance(op, MoveAside) else deletes if isinstance(op, Delete) else writes
        ).append(op)
    deletes.sort(key=lambda op: (tree_order(op.path), op.side.value), reverse=True)
    writes.sort(key=lambda op: (tree_order(op.path), op.side.value))
    moves.sort(key=lambda op: (tree_order(op.path), op.side.value))
    return [*moves, *deletes, *writes]


def safety_brakes(
    operations: Iterable[Operation],
    sides: Mapping[Side, Snapshot],
    *,
    had_ancestor: bool,
    limits: SafetyLimits,
    confirmed: frozenset[BrakeReason],
) -> list[Brake]:
    """The brakes that `operations`, planned from the snapshots `sides`, must stop at.

    An empty side with an ancestor (a pod restarted on an empty volume, an unmounted disk)
    would otherwise delete everything on the other side; a pass deleting past `limits` is
    suspicious in itself. Brakes whose reason is `confirmed` are not returned.
    """
    deletes = dict.fromkeys(Side, 0)
    for op in operations:
        if isinstance(op, Delete) and op.entry.kind is not Kind.DIR:
            deletes[op.side] += 1
    brakes = []
    for side, count in deletes.items():
        if not count:
            continue
        here = "the local folder" if side is Side.LOCAL else "the pod's folder"
        there = "the pod's folder" if side is Side.LOCAL else "the local folder"
        other = sides[side.other]
        if had_ancestor and not other and not other.untouchable:
            message = (
                f"{there} is empty, so this pass would delete {count} files in {here}; if it "
                "was emptied by accident (a pod on a new volume), forget the sync state to "
                "copy everything back instead"
            )
            brakes.append(Brake(BrakeReason.EMPTY_ROOT, side, count, message))
        files = sum(1 for entry in sides[side].values() if entry.kind is not Kind.DIR)
        if limits.exceeded(count, files):
            message = f"this pass would delete {count} of {files} files in {here}"
            brakes.append(Brake(BrakeReason.MASS_DELETE, side, count, message))
    return [brake for brake in brakes if brake.reason not in confirmed]
