"""Property tests of the planner: random histories on both sides from a common ancestor.

Each example builds a tree, copies it to both sides as the agreed ancestor, lets each side
do a random history (writes, deletes, renames, directories becoming files and back, mode
changes, links), then runs one pass (`model.sync_once`) and checks that

- both sides are equal afterwards;
- nothing either side held is lost, unless one side deleted or replaced it on purpose and the
  other side left it alone;
- every operation's preconditions held (the model's `apply` checks them);
- a second pass has nothing left to do.

`DEVSPACE_SYNC_EXAMPLES=20000` runs a deeper search (a few minutes) than the default 300.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.sync.model import Node, Tree, sync_once
from devspace.sync.operations import BrakeReason, Delete, SafetyLimits
from devspace.sync.plan import PlanOptions, plan
from devspace.sync.policy import MACOS, DirectionRules
from devspace.sync.snapshot import Ancestor, Kind, Side

NAMES = ["a", "b", "c"]
names = st.sampled_from(NAMES)
paths = st.lists(names, min_size=1, max_size=3).map("/".join)
# Shared contents make "the same change on both sides" likely; None means unique content.
contents = st.sampled_from([b"same", b"other", None])

actions = st.one_of(
    st.tuples(st.just("write"), paths, contents, st.booleans()),
    st.tuples(st.just("mkdir"), paths),
    st.tuples(st.just("remove"), paths),
    st.tuples(st.just("chmod"), paths),
    st.tuples(st.just("touch"), paths),
    st.tuples(st.just("symlink"), paths, names),
    st.tuples(st.just("rename"), paths, paths),
)
histories = st.lists(actions, max_size=8)
# Something unreadable or special appearing on one side, now and then.
histories_with_frozen = st.lists(
    st.one_of(actions, st.tuples(st.just("freeze"), paths)), max_size=8
)

UNLIMITED = PlanOptions(
    conflict_stamp="T",
    limits=SafetyLimits(max_deletes=10**9, min_deletes=10**9),
    confirmed=frozenset(BrakeReason),
)
FAST = settings(
    max_examples=int(os.environ.get("DEVSPACE_SYNC_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def play(tree: Tree, history: list[tuple[Any, ...]], who: str) -> None:
    for number, (action, path, *args) in enumerate(history):
        if action == "write":
            data, executable = args
            tree.write(path, data if data is not None else f"{who}{number}".encode(), executable)
        elif action == "symlink":
            tree.symlink(path, args[0])
        elif action == "rename":
            tree.rename(path, args[0])
        else:
            getattr(tree, action)(path)


def start(base: list[tuple[Any, ...]]) -> tuple[Tree, Ancestor]:
    tree = Tree()
    play(tree, base, "base")
    return tree, Ancestor(tree.snapshot(), tree.snapshot())


def check_nothing_lost(
    base: Tree | dict[Side, Tree], before: dict[Side, Tree], *after: Tree
) -> None:
    """Content either side held survives unless the other side changed that path on purpose.

    `base` is the tree both sides started from, or each side's own start.
    """
    bases = base if isinstance(base, dict) else {Side.LOCAL: base, Side.REMOTE: base}
    surviving = {n.content() for tree in after for n in tree.nodes.values()}
    for side, tree in before.items():
        other = before[side.other]
        for path, node in tree.nodes.items():
            if node.kind is Kind.DIR:
                continue
            original = bases[side].nodes.get(path)
            if node != original:
                assert node.content() in surviving, f"{side.value} changed {path}; lost it"
            elif other.nodes.get(path) == bases[side.other].nodes.get(path):
                kept = after[0].nodes.get(path)
                assert kept is not None, f"{path} was untouched on both sides, yet it went"
                assert kept.content() == node.content(), f"{path} was untouched, yet changed"


@FAST
@given(
    base=histories,
    local_history=histories_with_frozen,
    remote_history=histories_with_frozen,
    prefer=st.sampled_from(Side),
)
def test_histories_converge_without_loss(
    base: list[tuple[Any, ...]],
    local_history: list[tuple[Any, ...]],
    remote_history: list[tuple[Any, ...]],
    prefer: Side,
) -> None:
    tree, ancestor = start(base)
    local, remote = tree.copy(), tree.copy()
    play(local, local_history, "L")
    play(remote, remote_history, "R")
    before = {Side.LOCAL: local.copy(), Side.REMOTE: remote.copy()}
    options = PlanOptions(
        prefer=prefer,
        conflict_stamp="T",
        limits=UNLIMITED.limits,
        confirmed=UNLIMITED.confirmed,
    )

    result, settled = sync_once(local, remote, ancestor, options)

    frozen = local.frozen_paths() | remote.frozen_paths()
    assert local.contents(frozen) == remote.contents(frozen)
    check_nothing_lost(tree, before, local, remote)
    if not frozen:
        assert all(c.copy is not None for c in result.conflicts), result.conflicts
    again, _ = sync_once(local, remote, settled, options)
    assert again.operations == ()
    assert again.agreed == ()
    assert again.conflicts == ()


@FAST
@given(local_history=histories, remote_history=histories)
def test_without_an_ancestor_nothing_is_deleted_or_lost(
    local_history: list[tuple[Any, ...]], remote_history: list[tuple[Any, ...]]
) -> None:
    local, remote = Tree(), Tree()
    play(local, local_history, "L")
    play(remote, remote_history, "R")
    before = [n.content() for t in (local, remote) for n in t.nodes.values()]

    result, settled = sync_once(local, remote, Ancestor(), UNLIMITED)

    assert not [op for op in result.operations if isinstance(op, Delete)]
    assert local.contents() == remote.contents()
    surviving = {n.content() for n in local.nodes.values()}
    assert set(before) <= surviving
    again, _ = sync_once(local, remote, settled, UNLIMITED)
    assert again.is_empty


@FAST
@given(base=histories, local_history=histories, remote_history=histories)
def test_one_way_rules_never_write_the_protected_side(
    base: list[tuple[Any, ...]],
    local_history: list[tuple[Any, ...]],
    remote_history: list[tuple[Any, ...]],
) -> None:
    tree, ancestor = start(base)
    local, remote = tree.copy(), tree.copy()
    play(local, local_history, "L")
    play(remote, remote_history, "R")
    before = {Side.LOCAL: local.copy(), Side.REMOTE: remote.copy()}
    directions = DirectionRules(no_upload=["b"], no_download=["c/"])
    options = PlanOptions(
        conflict_stamp="T", confirmed=frozenset(BrakeReason), directions=directions
    )

    result, settled = sync_once(local, remote, ancestor, options)

    after = {Side.LOCAL: local, Side.REMOTE: remote}
    for op in result.operations:
        for path in (op.path, getattr(op, "to", op.path)):
            for seen in (before[op.side].nodes.get(path), after[op.side].nodes.get(path)):
                if seen is not None:
                    assert directions.may_write(op.side, path, seen.kind is Kind.DIR), op
    for side, tree_before in before.items():
        for path, node in tree_before.nodes.items():
            if node.kind is not Kind.DIR and node != tree.nodes.get(path):
                survivors = {n.content() for t in (local, remote) for n in t.nodes.values()}
                assert node.content() in survivors, f"{side.value}'s {path} was lost"
    again, _ = sync_once(local, remote, settled, options)
    assert again.operations == ()


@FAST
@given(
    base=st.lists(
        st.tuples(
            st.just("write"),
            st.sampled_from(["a", "A", "b", "a/x", "A/x"]),
            contents,
            st.just(False),
        ),
        max_size=4,
    ),
    remote_history=st.lists(
        st.one_of(
            st.tuples(
                st.just("write"),
                st.sampled_from(["a", "A", "b", "B", "a/x", "A/x", "é", "é"]),
                contents,
                st.booleans(),
            ),
            st.tuples(st.just("remove"), st.sampled_from(["a", "A", "b", "B"])),
            st.tuples(st.just("rename"), st.sampled_from(["a", "b"]), st.sampled_from(["A", "B"])),
        ),
        max_size=6,
    ),
)
def test_a_case_insensitive_laptop_never_gets_two_spellings(
    base: list[tuple[Any, ...]], remote_history: list[tuple[Any, ...]]
) -> None:
    seed = Tree(fold=MACOS)
    play(seed, base, "base")
    local = seed.copy()
    remote = Tree(seed.nodes)
    ancestor = Ancestor(seed.snapshot(), seed.snapshot())
    play(remote, remote_history, "R")
    options = PlanOptions(conflict_stamp="T", local_names=MACOS, confirmed=frozenset(BrakeReason))

    # The model's local tree refuses to create a second spelling: apply would raise.
    result, settled = sync_once(local, remote, ancestor, options)

    again = plan(local.snapshot(), remote.snapshot(), settled, options)
    assert again.operations == ()
    folded = [MACOS.fold(p) for p in local.nodes]
    assert len(folded) == len(set(folded))
    skipped_remote = {s.path for s in result.skipped if s.side is Side.LOCAL}
    for path, node in remote.nodes.items():
        if not any(path == s or path.startswith(s + "/") for s in skipped_remote):
            assert local.nodes.get(path, Node(Kind.DIR, b"missing")).content() == node.content()


@FAST
@given(base=histories, local_history=histories, remote_history=histories)
def test_a_laptop_without_modes_keeps_the_pods_modes_and_settles(
    base: list[tuple[Any, ...]],
    local_history: list[tuple[Any, ...]],
    remote_history: list[tuple[Any, ...]],
) -> None:
    tree, _ = start(base)
    local = Tree({p: replace(n, executable=False) for p, n in tree.nodes.items()}, modes=False)
    remote = tree.copy()
    seeds = {Side.LOCAL: local.copy(), Side.REMOTE: remote.copy()}
    ancestor = Ancestor(local.snapshot(), remote.snapshot())
    play(local, local_history, "L")
    play(remote, remote_history, "R")
    before = {Side.LOCAL: local.copy(), Side.REMOTE: remote.copy()}

    result, settled = sync_once(local, remote, ancestor, UNLIMITED)

    def content(t: Tree) -> dict[str, tuple[Kind, bytes, str]]:
        return {p: n.content() for p, n in t.nodes.items()}

    assert content(local) == content(remote)
    check_nothing_lost(seeds, before, local)
    written = {op.path for op in result.operations if op.side is Side.REMOTE}
    for path, node in before[Side.REMOTE].nodes.items():
        after = remote.nodes.get(path)
        if node.kind is Kind.FILE and after is not None and path not in written:
            assert after.executable == node.executable
    again, _ = sync_once(local, remote, settled, UNLIMITED)
    assert again.operations == ()
    assert again.agreed == ()
