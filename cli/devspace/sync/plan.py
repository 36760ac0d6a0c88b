"""The planner: three snapshots in, a `SyncPlan` out. Pure: no I/O, no clock.

A change is a difference between a side and its view in the ancestor. Per path:

- changed on one side only: that side's version goes to the other (a deletion too);
- changed on both the same way: nothing to copy, the ancestor is brought up to date;
- deleted on one side and changed on the other: the changed version wins (nothing is lost);
- changed on both differently: a `Conflict`. The preferred side keeps the name; the other
  version is moved aside to `<name>.conflict-<side>-<stamp>` and then synced like a new file.

The tree must stay a tree on both sides: a directory deleted on one side survives if anything
below it survives, and a directory replaced by a file on one side while the other changed
something inside it is a conflict of the directory. Without an ancestor (first sync, lost
state) every difference is "changed on both": nothing is ever deleted, and differing files
become conflicts rather than overwrites.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from devspace.sync.operations import (
    BrakeReason,
    Conflict,
    Delete,
    MoveAside,
    Operation,
    SafetyLimits,
    SetMode,
    Skipped,
    SyncPlan,
    in_apply_order,
    mode_differs,
    operation_for,
    safety_brakes,
)
from devspace.sync.policy import (
    ANY_CASE,
    LINUX,
    DirectionRules,
    NameRules,
    conflict_copy_name,
    refused_names,
)
from devspace.sync.snapshot import (
    DIRECTORY,
    Ancestor,
    Entry,
    Kind,
    Side,
    Snapshot,
    changed,
    is_within,
    parent,
    same_bytes_as_before,
    same_content,
    within,
)

SIDES = (Side.LOCAL, Side.REMOTE)
# Moving conflicts aside can expose new ones (rarely more than once); past this many rounds
# the remaining conflicts are left in place instead.
_MAX_ROUNDS = 8


@dataclass(frozen=True)
class PlanOptions:
    """How to plan. The engine passes the laptop's `NameRules` as `local_names`."""

    prefer: Side = Side.LOCAL
    conflict_stamp: str = ""
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    confirmed: frozenset[BrakeReason] = frozenset()
    local_names: NameRules = LINUX
    remote_names: NameRules = LINUX
    directions: DirectionRules = field(default_factory=DirectionRules)


def conflict_stamp(now: datetime) -> str:
    """The stamp that names conflict copies made at `now`: `20250131-235959` (UTC)."""
    return now.astimezone(UTC).strftime("%Y%m%d-%H%M%S")


class _Decision(NamedTuple):
    """What `path` must become on both sides, and which side holds that content.

    `source` None means both sides already hold it (or there is no content: a directory, or
    nothing at all).
    """

    target: Entry | None
    source: Side | None


def plan(
    local: Snapshot,
    remote: Snapshot,
    ancestor: Ancestor,
    options: PlanOptions | None = None,
) -> SyncPlan:
    """The operations that make both sides equal again, and what to tell the user.

    Never raises for any snapshots it is given.
    """
    return _Planner(local, remote, ancestor, options or PlanOptions()).run()


def needs_digest(local: Snapshot, remote: Snapshot, ancestor: Ancestor) -> frozenset[str]:
    """Files to hash on both sides before planning: changed on both, same size, no digests.

    Without their digests the planner cannot tell the same edit made twice (or a first sync
    over an existing copy) from a conflict, and plays safe with a conflict copy.
    """
    result = set()
    for path, mine in local.items():
        theirs = remote.get(path)
        if (
            mine.kind is Kind.FILE
            and theirs is not None
            and theirs.kind is Kind.FILE
            and theirs.size == mine.size
            and (mine.digest is None or theirs.digest is None)
            and changed(mine, ancestor.local.get(path))
            and changed(theirs, ancestor.remote.get(path))
        ):
            result.add(path)
    return frozenset(result)


def settle(ancestor: Ancestor, plan: SyncPlan, local: Snapshot, remote: Snapshot) -> Ancestor:
    """The ancestor once `plan` was applied: `Ancestor.settled` for the paths it touched.

    `local` and `remote` must hold what the apply itself observed right after each write.
    """
    return ancestor.settled(plan.touched, local, remote)


class _Planner:
    def __init__(
        self, local: Snapshot, remote: Snapshot, ancestor: Ancestor, options: PlanOptions
    ) -> None:
        self.original = {Side.LOCAL: local, Side.REMOTE: remote}
        self.snaps = dict(self.original)  # after conflict copies are moved aside
        self.base = {Side.LOCAL: ancestor.local, Side.REMOTE: ancestor.remote}
        self.ancestor = ancestor
        self.options = options
        self.names = {Side.LOCAL: options.local_names, Side.REMOTE: options.remote_names}
        self.held: set[str] = set()  # conflicts left in place: untouched on both sides
        self.moves: list[MoveAside] = []
        self.conflicts: list[Conflict] = []
        self.taken: set[str] | None = None
        self.decisions: dict[str, _Decision] = {}
        self.pinned: dict[Side, set[str]] = {Side.LOCAL: set(), Side.REMOTE: set()}
        self.untouchable: frozenset[str] = frozenset()
        self.is_untouchable = within(self.untouchable)

    def run(self) -> SyncPlan:
        rounds = 0
        while True:
            clashes = self._round()
            if not clashes:
                break
            rounds += 1
            self._resolve(clashes, may_move=rounds <= _MAX_ROUNDS)
        operations, skipped = self._operations()
        agreed = self._agreed(operations, skipped)
        return SyncPlan(
            operations=tuple(in_apply_order([*self.moves, *operations])),
            conflicts=tuple(self.conflicts),
            skipped=tuple(self._reported(skipped)),
            agreed=tuple(sorted(agreed)),
            brakes=tuple(
                safety_brakes(
                    operations,
                    self.original,
                    had_ancestor=len(self.ancestor) > 0,
                    limits=self.options.limits,
                    confirmed=self.options.confirmed,
                )
            ),
        )

    # --- deciding -------------------------------------------------------------------------

    def _round(self) -> dict[str, tuple[str, str]]:
        """Decide every changed path; return the conflicts found: path -> (reason, trigger)."""
        local, remote = self.snaps[Side.LOCAL], self.snaps[Side.REMOTE]
        base_local, base_remote = self.base[Side.LOCAL], self.base[Side.REMOTE]
        self.untouchable = local.untouchable | remote.untouchable | self.held
        self.is_untouchable = is_untouchable = within(self.untouchable)
        one_way = not self.options.directions.empty
        self.decisions = {}
        self.pinned = {Side.LOCAL: set(), Side.REMOTE: set()}
        clashes: dict[str, tuple[str, str]] = {}
        for path in local.keys() | remote.keys() | base_local.keys():
            if is_untouchable(path):
                continue
            mine, theirs = local.get(path), remote.get(path)
            mine_changed = changed(mine, base_local.get(path))
            theirs_changed = changed(theirs, base_remote.get(path))
            if mine_changed and theirs_changed:
                decision = self._both_changed(mine, theirs)
                if decision is None:
                    clashes[path] = ("changed on both sides", path)
                    continue
            elif mine_changed:
                decision = _one_changed(Side.LOCAL, mine, base_local.get(path))
            elif theirs_changed:
                decision = _one_changed(Side.REMOTE, theirs, base_remote.get(path))
            else:
                continue
            self.decisions[path] = decision
            if one_way:
                self._pin_one_way(path, decision)
        self._keep_tree(clashes)
        return clashes

    def _both_changed(self, mine: Entry | None, theirs: Entry | None) -> _Decision | None:
        if mine is None:
            return _one_changed(Side.REMOTE, theirs, None)
        if theirs is None:
            return _one_changed(Side.LOCAL, mine, None)
        if not same_content(mine, theirs):
            return None
        if mine.kind is Kind.DIR:
            return _Decision(DIRECTORY, None)
        kept = mine if self.options.prefer is Side.LOCAL else theirs
        if mine.executable is None or theirs.executable is None:
            executable = theirs.executable if mine.executable is None else mine.executable
            kept = kept._replace(executable=executable)
        return _Decision(kept, None)

    def _writes(self, side: Side, path: str, decision: _Decision) -> bool:
        """Whether reaching `decision` writes anything on `side`."""
        current, target = self.snaps[side].get(path), decision.target
        if target is None or current is None:
            return target is not current
        if current.kind is not target.kind:
            return True
        if target.kind is Kind.FILE:
            return decision.source not in (None, side) or mode_differs(current, target)
        return current.target != target.target

    def _pin_one_way(self, path: str, decision: _Decision) -> None:
        """One-way rules: a side that may not be written at `path` keeps what it has."""
        if self.options.directions.empty:
            return
        for side in SIDES:
            if not self._writes(side, path, decision):
                continue
            # Both what is there (replaced or deleted) and what comes must be writable.
            for entry in (decision.target, self.snaps[side].get(path)):
                is_dir = entry is not None and entry.kind is Kind.DIR
                if entry is not None and not self.options.directions.may_write(side, path, is_dir):
                    self.pinned[side].add(path)

    def _final(self, side: Side, path: str) -> Entry | None:
        """What `path` will be on `side` once the decisions are applied."""
        decision = self.decisions.get(path)
        if decision is None or path in self.pinned[side] or self.is_untouchable(path):
            return self.snaps[side].get(path)
        return decision.target

    def _keep_tree(self, clashes: dict[str, tuple[str, str]]) -> None:
        """Make every surviving path's parent a directory on both sides, or report a conflict.

        A directory deleted on one side is brought back when something below it survives (it
        was changed on the other side: deleting the directory would lose it). A directory that
        one side replaced with a file while something below it survives is a conflict.
        """
        verified: dict[Side, set[str]] = {Side.LOCAL: set(), Side.REMOTE: set()}
        pending: list[tuple[Side, str]] = []
        for side in SIDES:
            here, seen = self.snaps[side].untouchable, verified[side]
            for path in (*self.decisions, *self.pinned[side], *here, *self.held):
                up = parent(path)
                if up and up not in seen and (path in here or self._final(side, path)):
                    pending.append((side, path))
        while pending:
            side, path = pending.pop()
            seen = verified[side]
            up = parent(path)
            while up and up not in seen:
                final = self._final(side, up)
                if final is not None and final.kind is Kind.DIR:
                    seen.add(up)
                    up = parent(up)
                elif final is None and self._may_revive(side, up, clashes):
                    self.decisions[up] = _Decision(DIRECTORY, None)
                    self._pin_one_way(up, self.decisions[up])
                    pending.append((side.other, up))
                else:
                    reason = "one side replaced it while the other changed what was inside it"
                    clashes.setdefault(up, (reason, path))
                    break

    def _may_revive(self, side: Side, path: str, clashes: Mapping[str, object]) -> bool:
        # Called where the path's final state is "absent": decided so, not pinned there.
        return not (path in clashes or path in self.pinned[side] or self.is_untouchable(path))

    # --- conflicts ------------------------------------------------------------------------

    def _resolve(self, clashes: Mapping[str, tuple[str, str]], *, may_move: bool) -> None:
        moves: dict[Side, dict[str, str]] = {Side.LOCAL: {}, Side.REMOTE: {}}
        for path in sorted(clashes):
            if is_within(parent(path), clashes.keys()):
                continue  # moving the enclosing directory aside settles this one too
            reason, trigger = clashes[path]
            if self.is_untouchable(path):
                # The directory holds something sync must not touch: leave the trigger be.
                self.held.add(trigger)
                self.conflicts.append(Conflict(trigger, None, None, reason))
                continue
            move = self._move_aside(path) if may_move else None
            if move is None:
                self.held.add(path)
                self.conflicts.append(Conflict(path, None, None, reason))
                continue
            self.moves.append(move)
            moves[move.side][move.path] = move.to
            self.conflicts.append(Conflict(path, move.side.other, move.to, reason))
        for side, renames in moves.items():
            if renames:
                self.snaps[side] = self.snaps[side].moved(renames)

    def _move_aside(self, path: str) -> MoveAside | None:
        loser = self.options.prefer.other
        for side in (loser, loser.other):
            entry = self.snaps[side].get(path)
            if entry is None:
                continue
            if not self.options.directions.may_write(side, path, entry.kind is Kind.DIR):
                continue
            copy = self._copy_name(path, side)
            if copy is not None:
                return MoveAside(side, path, copy, entry)
        return None

    def _copy_name(self, path: str, side: Side) -> str | None:
        if self.taken is None:
            snapshots = (*self.snaps.values(), self.base[Side.LOCAL])
            self.taken = {ANY_CASE.fold(p) for s in snapshots for p in (*s, *s.untouchable)}
        return conflict_copy_name(
            path, side.value, self.options.conflict_stamp, self.taken, self.names.values()
        )

    # --- output ---------------------------------------------------------------------------

    def _operations(self) -> tuple[list[Operation], list[Skipped]]:
        operations: dict[Side, dict[str, Operation]] = {Side.LOCAL: {}, Side.REMOTE: {}}
        for path, decision in self.decisions.items():
            if self.is_untouchable(path):
                continue
            for side in SIDES:
                if path not in self.pinned[side]:
                    op = self._operation(side, path, decision)
                    if op is not None:
                        operations[side][path] = op
        skipped: list[Skipped] = []
        for side in SIDES:
            snapshot, planned = self.snaps[side], operations[side]
            refused = refused_names(
                present=[*snapshot, *snapshot.untouchable],
                created=[
                    p
                    for p, op in planned.items()
                    if p not in snapshot and not isinstance(op, Delete | SetMode)
                ],
                removed={p for p, op in planned.items() if isinstance(op, Delete)},
                rules=self.names[side],
            )
            for path, reason in sorted(refused.items()):
                if not is_within(parent(path), refused):
                    skipped.append(Skipped(path, side, reason))
            if refused:
                for path in [p for p in operations[side] if is_within(p, refused)]:
                    del operations[side][path]
        return [op for side in SIDES for op in operations[side].values()], skipped

    def _operation(self, side: Side, path: str, decision: _Decision) -> Operation | None:
        other = self.snaps[Side.REMOTE if side is Side.LOCAL else Side.LOCAL]
        return operation_for(
            side,
            path,
            self.snaps[side].get(path),
            decision.target,
            holds_bytes=decision.source in (None, side),
            source=other.get(path),
        )

    def _agreed(self, operations: list[Operation], skipped: list[Skipped]) -> set[str]:
        busy = {op.path for op in operations} | {s.path for s in skipped}
        local, remote = self.snaps[Side.LOCAL], self.snaps[Side.REMOTE]
        agreed = set()
        for path in self.decisions:
            if path in busy or path in self.pinned[Side.LOCAL] or path in self.pinned[Side.REMOTE]:
                continue
            if self.is_untouchable(path):
                continue
            now = (local.get(path), remote.get(path))
            before = (self.base[Side.LOCAL].get(path), self.base[Side.REMOTE].get(path))
            if now != before and (now[0] is None) == (now[1] is None):
                agreed.add(path)
        return agreed

    def _reported(self, skipped: list[Skipped]) -> list[Skipped]:
        found = [
            Skipped(path, side, reason)
            for side in SIDES
            for path, reason in (*self.original[side].frozen.items(), *self.original[side].rejected)
        ]
        return [*found, *skipped]


def _one_changed(side: Side, entry: Entry | None, before: Entry | None) -> _Decision:
    """`side` changed the path to `entry` and the other side did not touch it."""
    if entry is None:
        return _Decision(None, None)
    if entry.kind is Kind.DIR:
        return _Decision(DIRECTORY, None)
    if entry.kind is Kind.FILE and before is not None and same_bytes_as_before(entry, before):
        return _Decision(entry, None)  # only the mode changed: the other side has the bytes
    return _Decision(entry, side)
