"""An in-memory file system for the planner's tests, and a strict applier of `SyncPlan`s.

`Tree` is one side: path -> `Node`. Its mutations are what a user or a tool does between
syncs (they replace whatever is in the way, like `mkdir -p` over a file would after an `rm`).
`apply` plays the part of the sync engine's apply step and checks every precondition an
operation states, so a plan that could not be applied to a real file system fails here.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace

from devspace.sync.operations import (
    Delete,
    Download,
    MakeDir,
    MakeSymlink,
    MoveAside,
    Operation,
    SetMode,
    SyncPlan,
    Upload,
)
from devspace.sync.plan import PlanOptions, needs_digest, plan, settle
from devspace.sync.policy import NameRules
from devspace.sync.snapshot import (
    DIRECTORY,
    Ancestor,
    Entry,
    Kind,
    Side,
    Snapshot,
    is_within,
    parent,
)

# One clock for every write on both sides: a write never reuses an mtime, so size + mtime
# always reveal a change (the real engine's racy-mtime problem is not what these tests test).
_clock = itertools.count(1_000_000)


@dataclass(frozen=True)
class Node:
    kind: Kind
    data: bytes = b""
    target: str = ""
    executable: bool = False
    mtime: int = 0
    # Exists but sync may not represent it (an unreadable directory, a socket): the snapshot
    # lists it in `frozen`, and nothing at or below it may be touched.
    frozen: bool = False

    def content(self) -> tuple[Kind, bytes, str]:
        """What must survive a sync: kind and bytes (or link target)."""
        return (self.kind, self.data, self.target)


class ApplyError(AssertionError):
    """An operation's precondition did not hold: the plan could not be applied as is."""


class Tree:
    """One side's file system."""

    def __init__(
        self,
        nodes: dict[str, Node] | None = None,
        *,
        fold: NameRules | None = None,
        modes: bool = True,
    ):
        self.nodes: dict[str, Node] = dict(nodes or {})
        self.fold = fold  # case-insensitive file systems refuse a second spelling
        self.modes = modes  # False: no executable bit (Windows)

    def copy(self) -> Tree:
        return Tree(self.nodes, fold=self.fold, modes=self.modes)

    # --- what users do -----------------------------------------------------------------

    def _clear_way(self, path: str) -> None:
        """Make every ancestor of `path` a directory and remove whatever is at `path`."""
        parts = path.split("/")
        for depth in range(1, len(parts)):
            up = "/".join(parts[:depth])
            node = self.nodes.get(up)
            if node is None or node.kind is not Kind.DIR:
                self.remove(up)
                self._place(up, Node(Kind.DIR))
        self.remove(path)

    def _place(self, path: str, node: Node) -> None:
        self.nodes[path] = node

    def spelled(self, path: str) -> str:
        """`path` as this disk spells it: on a case-insensitive one, existing spellings win."""
        if self.fold is None:
            return path
        spelling = ""
        for part in path.split("/"):
            wanted = f"{spelling}/{part}" if spelling else part
            folded = self.fold.fold(wanted)
            spelling = next((p for p in self.nodes if self.fold.fold(p) == folded), wanted)
        return spelling

    def write(self, path: str, data: bytes, executable: bool = False) -> None:
        path = self.spelled(path)
        self._clear_way(path)
        node = Node(Kind.FILE, data, executable=executable and self.modes, mtime=next(_clock))
        self._place(path, node)

    def mkdir(self, path: str) -> None:
        path = self.spelled(path)
        if self.nodes.get(path) == Node(Kind.DIR):
            return
        self._clear_way(path)
        self._place(path, Node(Kind.DIR))

    def symlink(self, path: str, target: str) -> None:
        path = self.spelled(path)
        self._clear_way(path)
        self._place(path, Node(Kind.SYMLINK, target=target))

    def remove(self, path: str) -> None:
        path = self.spelled(path)
        for p in [p for p in self.nodes if p == path or p.startswith(path + "/")]:
            del self.nodes[p]

    def chmod(self, path: str) -> None:
        path = self.spelled(path)
        node = self.nodes.get(path)
        if node is not None and node.kind is Kind.FILE and self.modes:
            self.nodes[path] = replace(node, executable=not node.executable)

    def freeze(self, path: str) -> None:
        path = self.spelled(path)
        node = self.nodes.get(path)
        if node is not None:
            self.nodes[path] = replace(node, frozen=True)

    def frozen_paths(self) -> set[str]:
        return {p for p, n in self.nodes.items() if n.frozen}

    def touch(self, path: str) -> None:
        path = self.spelled(path)
        node = self.nodes.get(path)
        if node is not None and node.kind is Kind.FILE:
            self.nodes[path] = replace(node, mtime=next(_clock))

    def rename(self, source: str, destination: str) -> None:
        source, destination = self.spelled(source), self.spelled(destination)
        if source not in self.nodes or destination.startswith(source + "/"):
            return
        if source == destination:
            return
        moving = {p: n for p, n in self.nodes.items() if p == source or p.startswith(source + "/")}
        self.remove(source)
        self._clear_way(destination)
        for p, n in moving.items():
            self.nodes[destination + p[len(source) :]] = n

    # --- what sync sees ------------------------------------------------------------------

    def entry(self, path: str) -> Entry | None:
        node = self.nodes.get(path)
        if node is None:
            return None
        if node.kind is Kind.DIR:
            return DIRECTORY
        if node.kind is Kind.SYMLINK:
            return Entry(Kind.SYMLINK, target=node.target)
        return Entry(Kind.FILE, len(node.data), node.mtime, node.executable if self.modes else None)

    def snapshot(self) -> Snapshot:
        frozen_tops = self.frozen_paths()
        entries: dict[str, Entry] = {}
        frozen: dict[str, str] = {}
        for path, node in self.nodes.items():
            if is_within(parent(path), frozen_tops):
                continue
            if node.frozen:
                frozen[path] = "frozen in the model"
                continue
            entry = self.entry(path)
            assert entry is not None
            entries[path] = entry
        return Snapshot(entries, frozen=frozen)

    def digest(self, path: str) -> str:
        return "sha256:" + hashlib.sha256(self.nodes[path].data).hexdigest()

    def contents(
        self, leave_out: set[str] | None = None
    ) -> dict[str, tuple[Kind, bytes, str, bool]]:
        """Everything that must be equal on both sides after a sync (minus `leave_out`)."""
        return {
            p: (*n.content(), n.executable)
            for p, n in self.nodes.items()
            if not is_within(p, leave_out or set())
        }


def with_digests(tree: Tree, snapshot: Snapshot, paths: Iterable[str]) -> Snapshot:
    """What the engine does for `needs_digest`: hash those files."""
    return snapshot.with_digests({p: tree.digest(p) for p in paths if p in snapshot})


def apply(plan: SyncPlan, local: Tree, remote: Tree) -> None:
    """Apply `plan` in order, checking each operation's preconditions. Raises ApplyError."""
    trees = {Side.LOCAL: local, Side.REMOTE: remote}
    frozen = local.frozen_paths() | remote.frozen_paths()
    for op in plan.operations:
        for path in (op.path, getattr(op, "to", op.path)):
            if is_within(path, frozen):
                raise ApplyError(f"{op}: {path!r} is frozen on one side")
        _apply_one(op, trees)


def _expect(tree: Tree, path: str, expected: Entry | None, op: Operation) -> None:
    actual = tree.entry(path)
    if (actual is None) != (expected is None) or (
        actual is not None and expected is not None and actual[:5] != expected[:5]
    ):
        raise ApplyError(f"{op}: found {actual} at {path!r}")


def _expect_parent_dir(tree: Tree, path: str, op: Operation) -> None:
    up = parent(path)
    if up and tree.entry(up) != DIRECTORY:
        raise ApplyError(f"{op}: the parent of {path!r} is {tree.entry(up)}, not a directory")


def _expect_free_name(tree: Tree, path: str, op: Operation) -> None:
    if tree.fold is not None:
        twins = [p for p in tree.nodes if p != path and tree.fold.fold(p) == tree.fold.fold(path)]
        if twins:
            raise ApplyError(f"{op}: {path!r} would overwrite {twins[0]!r} (case-insensitive)")


def _clear(tree: Tree, path: str, replaces: Entry | None, op: Operation) -> None:
    is_dir = replaces is not None and replaces.kind is Kind.DIR
    if is_dir and any(p.startswith(path + "/") for p in tree.nodes):
        raise ApplyError(f"{op}: directory {path!r} is not empty")
    tree.nodes.pop(path, None)


def _copy(op: Upload | Download, source: Tree, tree: Tree) -> None:
    _expect(source, op.path, op.source, op)
    _expect(tree, op.path, op.replaces, op)
    _expect_parent_dir(tree, op.path, op)
    if op.replaces is None:
        _expect_free_name(tree, op.path, op)
    replaced = tree.nodes.get(op.path)
    _clear(tree, op.path, op.replaces, op)
    node = source.nodes[op.path]
    # Bytes, mode and mtime travel; the receiving side records its own view afterwards. A
    # side without modes sends none: the receiver keeps the file's mode (a new file: none).
    executable = node.executable
    if not source.modes:
        executable = replaced is not None and replaced.kind is Kind.FILE and replaced.executable
    tree.nodes[op.path] = replace(node, executable=executable and tree.modes)


def _set_mode(tree: Tree, op: SetMode) -> None:
    _expect(tree, op.path, op.entry, op)
    if not tree.modes:
        raise ApplyError(f"{op}: this side has no modes")
    tree.nodes[op.path] = replace(tree.nodes[op.path], executable=op.executable)


def _apply_one(op: Operation, trees: dict[Side, Tree]) -> None:
    tree = trees[op.side]
    if isinstance(op, Upload | Download):
        _copy(op, trees[op.side.other], tree)
    elif isinstance(op, MakeDir | MakeSymlink):
        _expect(tree, op.path, op.replaces, op)
        _expect_parent_dir(tree, op.path, op)
        if op.replaces is None:
            _expect_free_name(tree, op.path, op)
        _clear(tree, op.path, op.replaces, op)
        if isinstance(op, MakeDir):
            tree.nodes[op.path] = Node(Kind.DIR)
        else:
            tree.nodes[op.path] = Node(Kind.SYMLINK, target=op.target)
    elif isinstance(op, SetMode):
        _set_mode(tree, op)
    elif isinstance(op, Delete):
        _expect(tree, op.path, op.entry, op)
        _clear(tree, op.path, op.entry, op)
    elif isinstance(op, MoveAside):
        _expect(tree, op.path, op.entry, op)
        if tree.entry(op.to) is not None:
            raise ApplyError(f"{op}: {op.to!r} exists")
        _expect_free_name(tree, op.to, op)
        moving = {
            p: n for p, n in tree.nodes.items() if p == op.path or p.startswith(op.path + "/")
        }
        tree.remove(op.path)
        for p, n in moving.items():
            tree.nodes[op.to + p[len(op.path) :]] = n
    else:  # pragma: no cover
        raise AssertionError(op)


def sync_once(
    local: Tree, remote: Tree, ancestor: Ancestor, options: PlanOptions | None = None
) -> tuple[SyncPlan, Ancestor]:
    """One pass as the engine makes it: snapshot, hash where asked, plan, apply, settle."""
    before_local, before_remote = local.snapshot(), remote.snapshot()
    wanted = needs_digest(before_local, before_remote, ancestor)
    before_local = with_digests(local, before_local, wanted)
    before_remote = with_digests(remote, before_remote, wanted)
    result = plan(before_local, before_remote, ancestor, options)
    apply(result, local, remote)
    return result, settle(ancestor, result, local.snapshot(), remote.snapshot())
