"""The planner, rule by rule, on small hand-made snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

from devspace.sync.operations import (
    Brake,
    BrakeReason,
    Conflict,
    Delete,
    Download,
    MakeDir,
    MakeSymlink,
    MoveAside,
    Operation,
    SafetyLimits,
    SetMode,
    Skipped,
    SyncPlan,
    Upload,
)
from devspace.sync.plan import PlanOptions, conflict_stamp, needs_digest, plan, settle
from devspace.sync.policy import MACOS, WINDOWS, DirectionRules
from devspace.sync.snapshot import DIRECTORY as D
from devspace.sync.snapshot import Ancestor, Entry, Kind, Side, Snapshot

LOCAL, REMOTE = Side.LOCAL, Side.REMOTE
OPTIONS = PlanOptions(conflict_stamp="T")


def f(size: int = 1, mtime: int = 1, x: bool | None = False, digest: str | None = None) -> Entry:
    return Entry(Kind.FILE, size, mtime, x, "", digest)


def link(target: str) -> Entry:
    return Entry(Kind.SYMLINK, target=target)


def snap(
    entries: dict[str, Entry],
    *,
    frozen: dict[str, str] | None = None,
    ignored: tuple[str, ...] | set[str] = (),
    rejected: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
) -> Snapshot:
    return Snapshot(entries, frozen=frozen, ignored=ignored, rejected=rejected)


def agreed(entries: dict[str, Entry]) -> Ancestor:
    return Ancestor(Snapshot(entries), Snapshot(entries))


def run(
    local: dict[str, Entry],
    remote: dict[str, Entry],
    base: dict[str, Entry] | None,
    options: PlanOptions = OPTIONS,
) -> SyncPlan:
    return plan(snap(local), snap(remote), agreed(base or {}), options)


def index(ops: tuple[Operation, ...], wanted: Operation) -> int:
    return ops.index(wanted)


# --- one side changed ----------------------------------------------------------------------


def test_a_local_edit_is_uploaded_and_a_remote_one_downloaded() -> None:
    base = {"a": f(), "b": f()}

    result = run({"a": f(2, 2), "b": f()}, {"a": f(), "b": f(3, 3)}, base)

    assert result.operations == (Upload("a", f(2, 2), f()), Download("b", f(3, 3), f()))
    assert (result.conflicts, result.skipped, result.brakes) == ((), (), ())


def test_new_directories_are_made_before_what_goes_in_them() -> None:
    local = {"d": D, "d/e": D, "d/e/x": f(), "d/y": f()}

    result = run(local, {}, {})

    assert result.operations == (
        MakeDir(REMOTE, "d", None),
        MakeDir(REMOTE, "d/e", None),
        Upload("d/e/x", f(), None),
        Upload("d/y", f(), None),
    )


def test_a_file_deleted_on_one_side_and_untouched_on_the_other_is_deleted() -> None:
    base = {"d": D, "d/x": f(), "y": f()}

    result = run({"y": f()}, base, base)

    assert result.operations == (Delete(REMOTE, "d/x", f()), Delete(REMOTE, "d", D))


def test_deleted_on_one_side_and_changed_on_the_other_keeps_the_change() -> None:
    base = {"a": f()}

    result = run({}, {"a": f(2, 2)}, base)

    assert result.operations == (Download("a", f(2, 2), None),)


def test_a_mode_change_alone_sets_the_mode_without_copying() -> None:
    base = {"run.sh": f(x=False)}

    result = run({"run.sh": f(x=True)}, base, base)

    assert result.operations == (SetMode(REMOTE, "run.sh", True, f(x=False)),)


def test_a_laptop_without_modes_never_changes_the_pods_modes() -> None:
    base_local, base_remote = {"run.sh": f(x=None)}, {"run.sh": f(x=True)}
    ancestor = Ancestor(snap(base_local), snap(base_remote))

    edited = plan(snap({"run.sh": f(2, 2, x=None)}), snap(base_remote), ancestor, OPTIONS)
    unchanged = plan(snap(base_local), snap(base_remote), ancestor, OPTIONS)

    assert edited.operations == (Upload("run.sh", f(2, 2, x=None), f(x=True)),)
    assert unchanged.is_empty


def test_a_symlink_retargeted_on_one_side_is_retargeted_on_the_other() -> None:
    base = {"l": link("a"), "a": f(), "b": f()}

    result = run({**base, "l": link("b")}, base, base)

    assert result.operations == (MakeSymlink(REMOTE, "l", "b", link("a")),)


# --- both sides changed --------------------------------------------------------------------


def test_the_same_change_on_both_sides_copies_nothing_and_updates_the_ancestor() -> None:
    base = {"a": f(), "gone": f()}
    same = "sha256:1"

    result = run({"a": f(5, 7, digest=same)}, {"a": f(5, 9, digest=same)}, base)

    assert result.operations == ()
    assert result.agreed == ("a", "gone")


def test_the_same_size_without_digests_asks_for_digests_and_never_guesses() -> None:
    base = {"a": f()}
    local, remote = snap({"a": f(5, 7)}), snap({"a": f(5, 9)})

    assert needs_digest(local, remote, agreed(base)) == {"a"}
    guessed = plan(local, remote, agreed(base), OPTIONS)
    assert [c.path for c in guessed.conflicts] == ["a"]


def test_a_conflict_keeps_both_versions_and_the_preferred_side_keeps_the_name() -> None:
    base = {"a": f()}

    result = run({"a": f(2, 2)}, {"a": f(3, 3)}, base)

    copy = "a.conflict-remote-T"
    assert result.conflicts == (Conflict("a", LOCAL, copy, "changed on both sides"),)
    assert result.operations == (
        MoveAside(REMOTE, "a", copy, f(3, 3)),
        Upload("a", f(2, 2), None),
        Download(copy, f(3, 3), None),
    )


def test_preferring_the_remote_side_moves_the_laptops_version_aside() -> None:
    result = run({"a": f(2, 2)}, {"a": f(3, 3)}, {"a": f()}, PlanOptions(prefer=REMOTE))

    assert result.operations == (
        MoveAside(LOCAL, "a", "a.conflict-local", f(2, 2)),
        Download("a", f(3, 3), None),
        Upload("a.conflict-local", f(2, 2), None),
    )


def test_a_conflict_copy_never_takes_an_existing_name() -> None:
    base = {"a": f(), "a.conflict-remote-T": f(9, 9)}

    result = run({**base, "a": f(2, 2)}, {**base, "a": f(3, 3)}, base)

    assert result.conflicts[0].copy == "a.conflict-remote-T-2"


def test_a_conflict_that_cannot_be_copied_is_left_alone_and_the_rest_syncs() -> None:
    long = "n" * 240
    base = {long: f(), "b": f()}

    result = run({long: f(2, 2), "b": f(4, 4)}, {long: f(3, 3), "b": f()}, base)

    assert result.conflicts == (Conflict(long, None, None, "changed on both sides"),)
    assert result.operations == (Upload("b", f(4, 4), f()),)


def test_a_conflict_stamp_is_utc_seconds() -> None:
    assert conflict_stamp(datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC)) == "20250131-235959"


# --- directories ---------------------------------------------------------------------------


def test_a_directory_deleted_here_survives_if_something_in_it_changed_there() -> None:
    base = {"d": D, "d/changed": f(), "d/same": f()}

    result = run({}, {**base, "d/changed": f(2, 2)}, base)

    assert result.operations == (
        Delete(REMOTE, "d/same", f()),
        MakeDir(LOCAL, "d", None),
        Download("d/changed", f(2, 2), None),
    )


def test_a_directory_becoming_a_file_and_back() -> None:
    base = {"d": D, "d/x": f(), "d/e": D, "d/e/y": f()}

    to_file = run({"d": f(7, 7)}, base, base)
    to_dir = run({"d": f(7, 7)}, {"d": D, "d/z": f(5, 5)}, {"d": f(7, 7)})

    assert to_file.operations == (
        Delete(REMOTE, "d/x", f()),
        Delete(REMOTE, "d/e/y", f()),
        Delete(REMOTE, "d/e", D),
        Upload("d", f(7, 7), D),
    )
    assert to_dir.operations == (MakeDir(LOCAL, "d", f(7, 7)), Download("d/z", f(5, 5), None))


def test_a_directory_replaced_here_while_changed_inside_there_is_a_conflict() -> None:
    base = {"d": D, "d/x": f(), "d/y": f()}

    result = run({"d": f(7, 7)}, {**base, "d/x": f(2, 2)}, base)

    copy = "d.conflict-remote-T"
    assert [(c.path, c.copy) for c in result.conflicts] == [("d", copy)]
    assert result.operations == (
        MoveAside(REMOTE, "d", copy, D),
        Upload("d", f(7, 7), None),
        MakeDir(LOCAL, copy, None),
        Download(f"{copy}/x", f(2, 2), None),
        Download(f"{copy}/y", f(), None),
    )


def test_deletes_run_children_first_and_creations_parents_first() -> None:
    base = {"old": D, "old/a": D, "old/a/f": f()}
    local = {"new": D, "new/b": D, "new/b/g": f()}

    ops = run(local, base, base).operations

    assert index(ops, Delete(REMOTE, "old/a/f", f())) < index(ops, Delete(REMOTE, "old/a", D))
    assert index(ops, Delete(REMOTE, "old/a", D)) < index(ops, Delete(REMOTE, "old", D))
    assert index(ops, MakeDir(REMOTE, "new", None)) < index(ops, MakeDir(REMOTE, "new/b", None))
    assert index(ops, MakeDir(REMOTE, "new/b", None)) < index(ops, Upload("new/b/g", f(), None))


# --- no ancestor ---------------------------------------------------------------------------


def test_without_an_ancestor_nothing_is_deleted_and_differences_are_conflicts() -> None:
    local = {"mine": f(), "both": f(2, 2)}
    remote = {"theirs": f(), "both": f(3, 3)}

    result = run(local, remote, None)

    assert not [op for op in result.operations if isinstance(op, Delete)]
    assert Upload("mine", f(), None) in result.operations
    assert Download("theirs", f(), None) in result.operations
    assert [c.path for c in result.conflicts] == ["both"]


def test_without_an_ancestor_equal_files_are_recognised_by_their_digests() -> None:
    result = run({"a": f(4, 1, digest="sha256:x")}, {"a": f(4, 2, digest="sha256:x")}, None)

    assert result.operations == ()
    assert result.agreed == ("a",)


# --- what sync leaves alone ----------------------------------------------------------------


def test_frozen_paths_are_reported_and_untouched_on_both_sides() -> None:
    base = {"sock": f(), "d": D, "d/x": f()}
    local = snap({}, frozen={"sock": "a socket", "d": "cannot be read"})
    remote = snap({"sock": f(2, 2), "d": D, "d/x": f(3, 3), "d/new": f()})

    result = plan(local, remote, agreed(base), OPTIONS)

    assert result.operations == ()
    assert set(result.skipped) == {
        Skipped("sock", LOCAL, "a socket"),
        Skipped("d", LOCAL, "cannot be read"),
    }


def test_an_ignored_path_present_on_one_side_blocks_the_other_sides_version() -> None:
    local = snap({}, ignored={"build"})
    remote = snap({"build": f()})

    assert plan(local, remote, Ancestor(), OPTIONS).operations == ()


def test_rejected_remote_names_are_reported() -> None:
    remote = snap({}, rejected=[("../x", "a path with an empty, '.' or '..' component")])

    result = plan(snap({}), remote, Ancestor(), OPTIONS)

    assert result.skipped == (
        Skipped("../x", REMOTE, "a path with an empty, '.' or '..' component"),
    )


def test_names_a_windows_laptop_cannot_hold_are_skipped_there_not_mangled() -> None:
    remote = {"aux.c": f(), "ok": D, "ok/what?": D, "ok/what?/x": f(), "fine": f()}
    options = PlanOptions(local_names=WINDOWS)

    result = run({}, remote, None, options)

    assert [(s.path, s.side) for s in result.skipped] == [("aux.c", LOCAL), ("ok/what?", LOCAL)]
    assert result.operations == (Download("fine", f(), None), MakeDir(LOCAL, "ok", None))
    assert settle(Ancestor(), result, snap({"ok": D, "fine": f()}), snap(remote)) == agreed(
        {"ok": D, "fine": f()}
    )


def test_a_second_spelling_is_skipped_on_a_case_insensitive_laptop() -> None:
    base = {"readme": f()}
    remote = {"readme": f(), "README": f(2, 2)}

    result = run(base, remote, base, PlanOptions(local_names=MACOS))

    assert result.operations == ()
    assert [(s.path, s.side) for s in result.skipped] == [("README", LOCAL)]


def test_one_way_rules_keep_a_protected_side_as_it_is() -> None:
    base = {"dist": D, "dist/app.js": f()}
    options = PlanOptions(directions=DirectionRules(no_upload=["dist/"]))

    pushed = run({"dist": D, "dist/app.js": f(2, 2)}, base, base, options)
    pulled = run(base, {"dist": D, "dist/app.js": f(3, 3)}, base, options)

    assert pushed.operations == ()
    assert pulled.operations == (Download("dist/app.js", f(3, 3), f()),)


# --- brakes --------------------------------------------------------------------------------


def test_an_empty_remote_root_stops_the_deletion_of_local_files() -> None:
    base = {"src": D, "src/main.py": f(), ".git": D}

    result = run(base, {}, base)

    assert result.stopped
    assert [(b.reason, b.side, b.deletes) for b in result.brakes] == [
        (BrakeReason.EMPTY_ROOT, LOCAL, 1)
    ]
    assert "empty" in result.brakes[0].message
    confirmed = run(base, {}, base, PlanOptions(confirmed=frozenset(BrakeReason)))
    assert not confirmed.stopped
    assert confirmed.deletes(LOCAL) == 1


def test_deleting_more_than_the_limit_stops_the_pass() -> None:
    files = {f"f{n}": f() for n in range(300)}
    keep = {f"f{n}": f() for n in range(100)}
    limits = SafetyLimits(max_deletes=1000, max_fraction=0.5, min_deletes=100)

    many = run(files, keep, files, PlanOptions(limits=limits))
    few = run(files, {**keep, **{f"f{n}": f() for n in range(100, 250)}}, files)
    absolute = run(files, keep, files, PlanOptions(limits=SafetyLimits(max_deletes=150)))

    assert many.brakes == (
        Brake(
            BrakeReason.MASS_DELETE,
            LOCAL,
            200,
            "this pass would delete 200 of 300 files in the local folder",
        ),
    )
    assert not few.stopped
    assert [b.reason for b in absolute.brakes] == [BrakeReason.MASS_DELETE]


# --- the ancestor after a pass -------------------------------------------------------------


def test_settle_records_what_both_sides_hold_and_forgets_what_they_do_not() -> None:
    base = {"a": f(), "b": f()}
    result = run({"a": f(2, 2)}, base, base)
    after_local = snap({"a": f(2, 2)})
    after_remote = snap({"a": f(2, 5)})  # the pod's mtime lost precision

    settled = settle(agreed(base), result, after_local, after_remote)

    assert settled.local == snap({"a": f(2, 2)})
    assert settled.remote == snap({"a": f(2, 5)})


def test_settle_forgets_a_path_whose_two_sides_do_not_hold_the_same_thing() -> None:
    result = SyncPlan(agreed=("a", "l", "d"))

    settled = settle(
        agreed({"a": f(), "l": link("x"), "d": D}),
        result,
        snap({"a": f(2, 1, digest="sha256:1"), "l": link("x"), "d": D}),
        snap({"a": f(2, 1, digest="sha256:2"), "l": link("y"), "d": f()}),
    )

    assert len(settled) == 0
