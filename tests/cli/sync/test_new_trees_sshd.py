"""New folders sent whole (devspace.sync.newtrees) into the real sidecar: Debian's sshd, tar
and Perl.

A folder the pod lacks is extracted under a temporary name and renamed into place in one
step; these tests check it arrives complete, and that the step never replaces what the
developer made in the pod meanwhile nor writes through a parent that became a link.
"""

# ruff: noqa: F811 - test_apply_sshd's fixtures are imported, then named as parameters

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

# The sidecar's fixtures (see test_apply_sshd.py), and that module's pair of folders.
from ssh.conftest import *  # noqa: F403

from cli.sync.test_apply_sshd import (  # noqa: F401 - fixtures are found by name
    Pair,
    assert_converged,
    certificate,
    pair,
    sh,
    shell,
    write,
)
from devspace.sync import once, tarstream
from devspace.sync.operations import SyncPlan
from devspace.sync.plan import PlanOptions, plan
from devspace.sync.remote import PodFolder

pytestmark = [pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(120)]
OPTIONS = PlanOptions(conflict_stamp="T")
LEFTOVERS = "find . -name '.devspace-tmp-*'"


def make_project(pair: Pair) -> None:
    """A new package of 120 files in nested folders, one of them executable."""
    for n in range(120):
        write(pair.local / "pkg" / f"sub{n % 3}" / "deep" / f"mod{n}.py", f"# module {n}\n")
    write(pair.local / "pkg" / "run.sh", "#!/bin/sh\necho hi\n", 0o755)
    (pair.local / "pkg" / "empty").mkdir()


def test_a_new_folder_arrives_whole_with_modes_and_mtimes(
    pair: Pair, shell: PodFolder, sent_whole: list[str]
) -> None:
    make_project(pair)
    (pair.local / "pkg" / "run.sh").touch()  # a known mtime below
    mtime = int((pair.local / "pkg" / "run.sh").stat().st_mtime)

    report = pair.sync()

    assert sent_whole == ["pkg"]
    assert report.settled
    assert sh(shell, pair, "find pkg -type f | wc -l").strip() == "121"
    assert sh(shell, pair, "stat -c '%a %Y' pkg/run.sh").split() == ["755", str(mtime)]
    assert sh(shell, pair, "stat -c %a pkg/sub0/deep/mod0.py").strip() == "644"
    modes = sh(shell, pair, "find pkg -type d -exec stat -c %a {} +").split()
    assert set(modes) == {"755"}
    assert len(modes) == 8  # pkg, empty, three sub*, three deep
    assert sh(shell, pair, LEFTOVERS) == ""
    assert_converged(pair)


@pytest.fixture(params=["renameat2", "look-then-rename"])
def placing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Perl step as it runs on x86-64 and arm64, and where RENAME_NOREPLACE is unknown
    (it looks first, as OpenSSH's sftp-server renames a folder)."""
    if request.param == "look-then-rename":
        script = tarstream._PLACE.replace("(x86_64 => 316, aarch64 => 276)", "()")
        assert script != tarstream._PLACE
        monkeypatch.setattr(tarstream, "_PLACE", script)


@pytest.mark.usefixtures("placing")
@pytest.mark.parametrize("made", ["an empty folder", "a folder with a file"])
def test_a_folder_made_in_the_pod_after_the_listing_is_not_replaced(
    pair: Pair, shell: PodFolder, sent_whole: list[str], made: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pair)
    script = "mkdir pkg" + (" && printf mine > pkg/mine.txt" if made.endswith("file") else "")

    def plan_then_make_it_in_the_pod(*args: object, **kwargs: object) -> SyncPlan:
        result = plan(*args, **kwargs)  # type: ignore[arg-type]
        sh(shell, pair, script)
        return result

    monkeypatch.setattr(once, "plan", plan_then_make_it_in_the_pod)
    report = once.sync_once(pair.local, pair.pod, pair.store, options=OPTIONS)

    assert sent_whole == ["pkg"]
    assert report.applied is not None
    stale = {s.operation.path for s in report.applied.stale}
    assert len(stale) == 129  # all 121 files and 8 folders
    assert "pkg/run.sh" in stale
    assert all("appeared in the pod" in s.reason for s in report.applied.stale)
    inode = sh(shell, pair, "stat -c %i pkg")
    expected = "mine.txt" if made.endswith("file") else ""
    assert sh(shell, pair, "ls -A pkg").strip() == expected
    assert sh(shell, pair, LEFTOVERS) == ""

    monkeypatch.undo()
    again = pair.sync()  # into the pod's own folder, file by file
    assert again.settled
    assert sh(shell, pair, "stat -c %i pkg") == inode
    assert sh(shell, pair, "find pkg -type f | wc -l").strip() == str(121 + bool(expected))
    assert_converged(pair)


def test_a_new_folder_is_not_put_in_place_through_a_parent_turned_link(
    pair: Pair, shell: PodFolder, sent_whole: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = f"/tmp/outside-{uuid.uuid4().hex[:8]}"
    write(pair.local / "app" / "keep.txt", "synced")
    pair.sync()
    for n in range(80):
        write(pair.local / "app" / "new" / f"f{n}.txt", f"{n}")

    def plan_then_swap_in_a_link(*args: object, **kwargs: object) -> SyncPlan:
        result = plan(*args, **kwargs)  # type: ignore[arg-type]
        sh(shell, pair, f"mkdir {outside} && mv app/keep.txt {outside}/ && rmdir app")
        sh(shell, pair, f"ln -s {outside} app")
        return result

    monkeypatch.setattr(once, "plan", plan_then_swap_in_a_link)
    report = once.sync_once(pair.local, pair.pod, pair.store, options=OPTIONS)

    assert sent_whole == ["app/new"]
    assert report.applied is not None
    assert len(report.applied.stale) == 81
    assert all("not a directory in the pod" in s.reason for s in report.applied.stale)
    assert shell.run(f"ls -A {outside}").decode().split() == ["keep.txt"]
    assert sh(shell, pair, LEFTOVERS) == ""


def test_a_new_folder_left_by_a_pass_cut_short_is_removed_by_the_next(
    pair: Pair, shell: PodFolder
) -> None:
    sh(shell, pair, "mkdir -p .devspace-tmp-cut-1/a && echo partial > .devspace-tmp-cut-1/a/f")
    write(pair.local / "kept.txt", "x")

    pair.sync()

    assert sh(shell, pair, "ls -A").split() == ["kept.txt"]


def test_a_stream_cut_mid_folder_leaves_no_folder_behind(
    pair: Pair, shell: PodFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pair)
    stream_tar = PodFolder.stream_tar

    def cut_short(self: PodFolder, members: Iterable[bytes], *args: Any) -> bytes:
        def some(parts: Iterable[bytes]) -> Iterator[bytes]:
            for n, part in enumerate(parts):
                if n == 1:
                    return  # the archive ends without its end: tar fails
                yield part[: len(part) // 2]

        return stream_tar(self, some(members), *args)

    monkeypatch.setattr(PodFolder, "stream_tar", cut_short)
    report = once.sync_once(pair.local, pair.pod, pair.store, options=OPTIONS)

    assert report.applied is not None
    assert not report.applied.complete
    assert sh(shell, pair, LEFTOVERS) == ""
    assert sh(shell, pair, "ls -A").strip() == ""
    monkeypatch.undo()
    pair.sync()
    assert_converged(pair)


def test_a_file_changed_after_planning_is_left_out_of_its_folder_until_the_next_pass(
    pair: Pair, shell: PodFolder, sent_whole: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pair)
    changed = pair.local / "pkg" / "sub1" / "deep" / "mod1.py"

    def plan_then_edit_on_the_laptop(*args: object, **kwargs: object) -> SyncPlan:
        result = plan(*args, **kwargs)  # type: ignore[arg-type]
        changed.write_text("# edited while the pass ran\n")
        return result

    monkeypatch.setattr(once, "plan", plan_then_edit_on_the_laptop)
    report = once.sync_once(pair.local, pair.pod, pair.store, options=OPTIONS)

    assert sent_whole == ["pkg"]
    assert report.applied is not None
    assert [s.operation.path for s in report.applied.stale] == ["pkg/sub1/deep/mod1.py"]
    assert "pkg/sub1/deep/mod1.py" not in {op.path for op in report.applied.done}
    assert sh(shell, pair, "find pkg -type f | wc -l").strip() == "120"
    assert sh(shell, pair, LEFTOVERS) == ""
    monkeypatch.undo()
    again = pair.sync()  # a new file in the pod's folder, not a conflict with a lost one
    assert again.plan.conflicts == ()
    assert len(again.plan.operations) == 1
    assert sh(shell, pair, "cat pkg/sub1/deep/mod1.py") == "# edited while the pass ran\n"
    assert_converged(pair)
