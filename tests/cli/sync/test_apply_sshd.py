"""Sync passes against the real sidecar: Debian's sshd in a test-node pod, real files both sides.

paramiko connects straight to the pod's IP with a certificate (no gateway), as the CLI's second
hop will. Each test syncs its own folder under /workspace, so one pod serves the module. The
pod is changed behind sync's back with commands run over a second connection, as a developer's
shell in the pod would.

Measurements are benchmarks, not tests: `bench/run` (see BENCHMARKS.md, which also keeps the
figures that chose `podwrite.TAR_MIN_FILES` and sync's use of TCP_NODELAY).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

# A conftest's fixtures reach only its own directory: bring the sidecar's here, all of them
# (they depend on each other), so this module gets its own pod.
from ssh.conftest import *  # noqa: F403
from ssh.conftest import Keys, Sidecar

from devspace.sync import once
from devspace.sync.apply import ApplyInterrupted, apply
from devspace.sync.once import PassReport, sync_once
from devspace.sync.operations import BrakeReason, MakeDir, SyncPlan, Upload
from devspace.sync.plan import PlanOptions, plan
from devspace.sync.policy import IgnoreRules
from devspace.sync.remote import PodFolder
from devspace.sync.scan import add_digests, scan
from devspace.sync.snapshot import Kind, Side
from devspace.sync.state import AncestorStore, FolderKey

pytestmark = [pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(120)]
OPTIONS = PlanOptions(conflict_stamp="T")


def connect(sidecar: Sidecar, key: Path) -> paramiko.SSHClient:
    """paramiko to the sidecar with the certificate, pinning the host key it must present."""
    client = paramiko.SSHClient()
    line = sidecar.known_hosts.read_text().split()
    host_key = paramiko.Ed25519Key(data=__import__("base64").b64decode(line[2]))
    client.get_host_keys().add(f"[{sidecar.ip}]:2222", host_key.get_name(), host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key))
    pkey.load_certificate(f"{key}-cert.pub")
    client.connect(
        sidecar.ip,
        port=2222,
        username="dev",
        pkey=pkey,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client


@pytest.fixture(scope="module")
def certificate(keys: Keys) -> Path:
    return keys.sign("sync")


@pytest.fixture(scope="module")
def shell(sidecar: Sidecar, certificate: Path) -> Iterator[PodFolder]:
    """A second connection, standing in for the developer's shell in the pod."""
    client = connect(sidecar, certificate)
    yield PodFolder(client.open_sftp(), "/workspace")
    client.close()


class Pair:
    """One test's two folders, its ancestor store, and passes between them."""

    def __init__(self, local: Path, remote: str, state: Path, client: paramiko.SSHClient):
        self.local = local
        self.remote = remote
        self.client = client
        self.pod = PodFolder(client.open_sftp(), remote)
        self.store = AncestorStore.for_folder(FolderKey("space", str(local), remote), state)

    def sync(self, **kwargs: object) -> PassReport:
        report = sync_once(self.local, self.pod, self.store, options=OPTIONS, **kwargs)  # type: ignore[arg-type]
        if report.applied is not None:
            assert report.applied.stale == ()
        return report

    def reconnect(self, sidecar: Sidecar, key: Path) -> None:
        self.client.close()
        self.client = connect(sidecar, key)
        self.pod = PodFolder(self.client.open_sftp(), self.remote)


@pytest.fixture
def pair(sidecar: Sidecar, certificate: Path, shell: PodFolder, tmp_path: Path) -> Iterator[Pair]:
    remote = f"/workspace/t-{uuid.uuid4().hex[:10]}"
    shell.run(f"mkdir {remote}")
    (tmp_path / "local").mkdir()
    result = Pair(tmp_path / "local", remote, tmp_path / "state", connect(sidecar, certificate))
    yield result
    result.client.close()
    result.store.close()


def sh(shell: PodFolder, pair: Pair, script: str) -> str:
    """Run `script` in the pod, in the pair's remote folder."""
    return shell.run(f"cd {shlex.quote(pair.remote)} && {script}").decode()


def local_tree(root: Path) -> dict[str, tuple[str, str, bool | None]]:
    """path -> (kind, content hash or link target, executable) for what sync carries."""
    snapshot = scan(root, IgnoreRules()).snapshot
    snapshot = add_digests(root, snapshot, [p for p, e in snapshot.items() if e.kind is Kind.FILE])
    return {p: (e.kind.value, e.digest or e.target, e.executable) for p, e in snapshot.items()}


def remote_tree(pod: PodFolder) -> dict[str, tuple[str, str, bool | None]]:
    snapshot = pod.listing(IgnoreRules())
    digests = pod.digests(p for p, e in snapshot.items() if e.kind is Kind.FILE)
    return {p: (e.kind.value, digests.get(p, e.target), e.executable) for p, e in snapshot.items()}


def assert_converged(pair: Pair) -> None:
    assert local_tree(pair.local) == remote_tree(pair.pod)
    again = pair.sync()
    assert again.plan.is_empty, again.plan  # what was recorded is what each side shows


def write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


# --- both directions -----------------------------------------------------------------------


@pytest.mark.parametrize("tar", [False, True], ids=["sftp", "tar"])
def test_files_go_both_ways_with_modes_and_mtimes(pair: Pair, shell: PodFolder, tar: bool) -> None:
    write(pair.local / "src" / "app.py", "print('laptop')\n")
    write(pair.local / "run.sh", "#!/bin/sh\necho hi\n", 0o755)
    os.utime(pair.local / "run.sh", ns=(1_700_000_000_123_456_789,) * 2)
    (pair.local / "link").symlink_to("src/app.py")
    sh(shell, pair, "mkdir -p gen && printf 'lock' > gen/pod.lock && chmod 755 gen/pod.lock")

    report = pair.sync(tar=tar)

    assert report.settled
    assert not report.plan.conflicts
    assert (pair.local / "gen" / "pod.lock").read_text() == "lock"
    assert os.access(pair.local / "gen" / "pod.lock", os.X_OK)
    pod_stat = sh(shell, pair, "stat -c '%a %Y' run.sh && readlink link && cat src/app.py")
    assert pod_stat.splitlines() == ["755 1700000000", "src/app.py", "print('laptop')"]
    pod_mtime = pair.pod.entries(["gen/pod.lock"])["gen/pod.lock"]
    assert pod_mtime is not None
    assert (pair.local / "gen" / "pod.lock").stat().st_mtime_ns == pod_mtime.mtime_ns
    assert_converged(pair)


def test_deletes_and_renames_on_either_side(pair: Pair, shell: PodFolder) -> None:
    for name in ("a", "b", "c", "d/e", "d/f"):
        write(pair.local / name, f"content of {name}")
    pair.sync()

    (pair.local / "a").unlink()
    (pair.local / "d").rename(pair.local / "renamed")
    sh(shell, pair, "rm b && mv c c2")

    report = pair.sync()

    assert not report.plan.conflicts
    assert sorted(local_tree(pair.local)) == ["c2", "renamed", "renamed/e", "renamed/f"]
    assert_converged(pair)


def test_a_directory_becomes_a_file_and_back(pair: Pair, shell: PodFolder) -> None:
    write(pair.local / "thing" / "inner.txt", "inside")
    pair.sync()

    (pair.local / "thing" / "inner.txt").unlink()
    (pair.local / "thing").rmdir()
    write(pair.local / "thing", "now a file")
    pair.sync()
    assert sh(shell, pair, "cat thing") == "now a file"

    sh(shell, pair, "rm thing && mkdir thing && echo back > thing/again")
    report = pair.sync()

    assert not report.plan.conflicts
    assert (pair.local / "thing" / "again").read_text() == "back\n"
    assert_converged(pair)


def test_concurrent_edits_keep_both_versions_on_both_sides(pair: Pair, shell: PodFolder) -> None:
    write(pair.local / "notes.txt", "original")
    pair.sync()
    write(pair.local / "notes.txt", "laptop edit")
    sh(shell, pair, "printf 'pod edit!' > notes.txt")

    report = pair.sync()

    (conflict,) = report.plan.conflicts
    assert (conflict.path, conflict.kept, conflict.copy) == (
        "notes.txt",
        Side.LOCAL,
        "notes.txt.conflict-remote-T",
    )
    for read in (
        ((pair.local / p).read_text for p in ("notes.txt", conflict.copy)),
        (
            lambda: sh(shell, pair, "cat notes.txt"),
            lambda: sh(shell, pair, f"cat {conflict.copy}"),
        ),
    ):
        assert [r() for r in read] == ["laptop edit", "pod edit!"]
    assert_converged(pair)


def test_a_directory_replaced_here_and_filled_there_keeps_both(
    pair: Pair, shell: PodFolder
) -> None:
    write(pair.local / "d" / "a.txt", "a")
    pair.sync()
    (pair.local / "d" / "a.txt").unlink()
    (pair.local / "d").rmdir()
    write(pair.local / "d", "the laptop made d a file")
    sh(shell, pair, "printf 'new in the pod' > d/b.txt")

    report = pair.sync()

    (conflict,) = report.plan.conflicts
    assert conflict.path == "d"
    assert conflict.copy is not None
    copy = conflict.copy
    assert (pair.local / "d").read_text() == "the laptop made d a file"
    assert (pair.local / copy / "b.txt").read_text() == "new in the pod"
    assert sh(shell, pair, f"cat d {copy}/b.txt") == "the laptop made d a filenew in the pod"
    assert_converged(pair)


# --- brakes and boundaries -----------------------------------------------------------------


def test_an_emptied_pod_folder_deletes_nothing_on_the_laptop(pair: Pair, shell: PodFolder) -> None:
    for n in range(5):
        write(pair.local / f"file{n}", str(n))
    pair.sync()
    sh(shell, pair, "rm -rf ./*")

    report = pair.sync()

    assert report.stopped
    assert report.applied is None
    (brake,) = report.plan.brakes
    assert (brake.reason, brake.side) == (BrakeReason.EMPTY_ROOT, Side.LOCAL)
    assert "the pod's folder is empty" in brake.message
    assert len(list(pair.local.iterdir())) == 5


def test_a_link_leading_out_of_the_root_is_neither_followed_nor_uploaded(
    pair: Pair, shell: PodFolder, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    write(outside / "secret", "do not upload")
    (pair.local / "escape").symlink_to(outside)
    (pair.local / "abs").symlink_to(outside / "secret")
    write(pair.local / "ok.txt", "fine")

    report = pair.sync()

    assert {s.path for s in report.plan.skipped} == {"escape", "abs"}
    assert sh(shell, pair, "ls -A") == "ok.txt\n"


def test_hostile_names_in_the_pod_are_never_written_through(
    pair: Pair, shell: PodFolder, tmp_path: Path
) -> None:
    outside = f"/tmp/outside-{uuid.uuid4().hex[:8]}"  # the pod's own /tmp
    sh(shell, pair, f"mkdir {outside}")
    sh(shell, pair, f"ln -s {outside} evil && ln -s ../.. up")
    sh(
        shell,
        pair,
        "touch 'back\\slash' \"$(printf 'new\\nline')\" && mkdir -p '..x' && touch '..x/ok'",
    )
    write(pair.local / "evil" / "planted", "must stay on the laptop")
    write(pair.local / "up" / "planted", "must stay on the laptop")

    report = pair.sync()

    skipped = {s.path for s in report.plan.skipped if s.side is Side.REMOTE}
    assert {"evil", "up", "back\\slash"} <= skipped
    assert shell.run(f"ls -A {outside}") == b""
    assert sorted(os.listdir(pair.local)) == ["..x", "evil", "new\nline", "up"]
    assert (pair.local / "..x" / "ok").exists()


def test_a_file_changed_after_planning_is_not_overwritten(pair: Pair, shell: PodFolder) -> None:
    write(pair.local / "a.txt", "v1")
    write(pair.local / "b.txt", "v1")
    pair.sync()
    write(pair.local / "a.txt", "laptop v2")
    sh(shell, pair, "printf 'pod v2' > b.txt")
    local = scan(pair.local, IgnoreRules()).snapshot
    remote = pair.pod.listing(IgnoreRules())
    ancestor = pair.store.load()
    planned = plan(local, remote, ancestor, OPTIONS)
    # Both targets change again after the plan was made.
    sh(shell, pair, "printf 'pod v3, newer' > a.txt")
    write(pair.local / "b.txt", "laptop v3, newer")

    result = apply(planned, pair.local, pair.pod, local, remote)

    assert {s.operation.path for s in result.stale} == {"a.txt", "b.txt"}
    assert sh(shell, pair, "cat a.txt") == "pod v3, newer"
    assert (pair.local / "b.txt").read_text() == "laptop v3, newer"
    report = pair.sync()  # a fresh plan sees both edits as conflicts and keeps every version
    assert {c.path for c in report.plan.conflicts} == {"a.txt", "b.txt"}
    assert_converged(pair)


def test_leftover_temporary_files_are_removed_and_never_synced(
    pair: Pair, shell: PodFolder
) -> None:
    write(pair.local / "sub" / ".devspace-tmp-0123", "half a download")
    sh(shell, pair, "mkdir gen && printf 'half an upload' > gen/.devspace-tmp-4567")

    report = pair.sync()

    assert set(report.plan.operations) == {
        MakeDir(Side.REMOTE, "sub", None),
        MakeDir(Side.LOCAL, "gen", None),
    }
    assert list((pair.local / "sub").iterdir()) == []
    assert sh(shell, pair, "ls -A gen") == ""


def test_a_missing_pod_folder_stops_the_pass(pair: Pair, shell: PodFolder) -> None:
    write(pair.local / "keep.txt", "precious")
    pair.sync()
    sh(shell, pair, f"cd / && rm -r {shlex.quote(pair.remote)}")

    report = pair.sync()

    assert report.missing_remote
    assert [b.reason for b in report.plan.brakes] == [BrakeReason.EMPTY_ROOT]
    assert (pair.local / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("tar", [False, True], ids=["sftp", "tar"])
def test_a_pod_file_made_after_the_passs_listing_is_not_overwritten(
    pair: Pair, shell: PodFolder, tar: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full pass trusts its own fresh listing for the first check before writing; the file
    # the developer makes in the pod right after that listing must still win.
    write(pair.local / "new.txt", "from the laptop")
    write(pair.local / "other.txt", "also new")

    def plan_then_edit_in_the_pod(*args: object, **kwargs: object) -> SyncPlan:
        result = plan(*args, **kwargs)  # type: ignore[arg-type]
        sh(shell, pair, "printf 'made in the pod' > new.txt")
        return result

    monkeypatch.setattr(once, "plan", plan_then_edit_in_the_pod)
    report = sync_once(pair.local, pair.pod, pair.store, options=OPTIONS, tar=tar)

    assert report.applied is not None
    assert [s.operation.path for s in report.applied.stale] == ["new.txt"]
    assert sh(shell, pair, "cat new.txt") == "made in the pod"
    assert sh(shell, pair, "cat other.txt") == "also new"
    monkeypatch.undo()
    again = pair.sync()  # the next pass sees a conflict and keeps both versions
    assert [c.path for c in again.plan.conflicts] == ["new.txt"]
    assert_converged(pair)


@pytest.mark.parametrize("tar", [False, True], ids=["sftp", "tar"])
def test_a_pod_file_changed_after_planning_is_not_downloaded(
    pair: Pair, shell: PodFolder, tar: bool
) -> None:
    sh(shell, pair, "printf v1 > made-in-pod.txt")
    local = scan(pair.local, IgnoreRules()).snapshot
    remote = pair.pod.listing(IgnoreRules())
    planned = plan(local, remote, pair.store.load(), OPTIONS)
    sh(shell, pair, "printf 'v2, longer' > made-in-pod.txt")

    result = apply(planned, pair.local, pair.pod, local, remote, tar=tar)

    assert [s.operation.path for s in result.stale] == ["made-in-pod.txt"]
    assert list(pair.local.iterdir()) == []
    pair.sync()
    assert (pair.local / "made-in-pod.txt").read_text() == "v2, longer"


def test_a_parent_turned_into_a_link_after_planning_is_not_written_through(
    pair: Pair, shell: PodFolder
) -> None:
    outside = f"/tmp/outside-{uuid.uuid4().hex[:8]}"
    write(pair.local / "d" / "old.txt", "synced")
    pair.sync()
    write(pair.local / "d" / "new.txt", "would land outside")
    local = scan(pair.local, IgnoreRules()).snapshot
    remote = pair.pod.listing(IgnoreRules())
    planned = plan(local, remote, pair.store.load(), OPTIONS)
    sh(shell, pair, f"mkdir {outside} && mv d/old.txt {outside}/ && rmdir d && ln -s {outside} d")

    result = apply(planned, pair.local, pair.pod, local, remote)

    (stale,) = result.stale
    assert stale.operation.path == "d/new.txt"
    assert "not a directory in the pod" in stale.reason
    assert shell.run(f"ls -A {outside}") == b"old.txt\n"


@pytest.mark.parametrize("tar", [False, None], ids=["sftp", "stream"])
def test_a_connection_cut_mid_upload_leaves_no_partial_file(
    pair: Pair, shell: PodFolder, sidecar: Sidecar, certificate: Path, tar: bool | None
) -> None:
    data = os.urandom(1 << 20) * 48
    write(pair.local / "big.bin", data)
    transport = pair.client.get_transport()
    assert transport is not None
    sent = [0]

    def cut_midway(count: int) -> None:
        sent[0] += count
        if sent[0] >= 8 << 20 and transport.is_active():
            threading.Thread(target=transport.close).start()

    with pytest.raises(ApplyInterrupted):
        pair.sync(progress=cut_midway, tar=tar)

    if tar is False:  # SFTP leaves the temporary name, for the next pass to remove
        assert sh(shell, pair, "ls -A").startswith(".devspace-tmp-")
    else:  # the stream's command removes it once its input ends
        deadline = time.monotonic() + 30
        while (listed := sh(shell, pair, "ls -A")) and time.monotonic() < deadline:
            assert listed.startswith(".devspace-tmp-")
            time.sleep(0.1)
        assert listed == ""
    pair.reconnect(sidecar, certificate)
    report = pair.sync(tar=tar)
    assert [type(op) for op in report.plan.operations] == [Upload]
    assert sh(shell, pair, "ls -A; sha256sum big.bin").split() == [
        "big.bin",
        hashlib.sha256(data).hexdigest(),
        "big.bin",
    ]
    assert_converged(pair)


def test_a_branch_switch_of_a_thousand_files_converges(pair: Pair) -> None:
    def module(n: int) -> Path:
        return pair.local / f"pkg{n % 30}" / f"mod{n}.py"

    for n in range(2400):
        write(module(n), f"# module {n}\n")
    pair.sync()
    # `git checkout other-branch`: 300 deleted, 300 moved to a new package, 100 edited, 300 new.
    (pair.local / "moved").mkdir()
    for n in range(0, 1200, 4):
        module(n).unlink()
        module(n + 1).rename(pair.local / "moved" / f"mod{n + 1}.py")
        if n % 12 == 0:
            write(module(n + 2), f"# module {n + 2}, edited on the branch\n")
        write(pair.local / "new" / f"file{n}.txt", f"new {n}\n" * (n % 7))

    started = time.monotonic()
    report = pair.sync()
    elapsed = time.monotonic() - started

    assert len(report.plan.operations) >= 1000
    assert not report.plan.conflicts
    assert not report.plan.brakes
    # The goal is 5 s (issue 7; 0.4 s here); the bound leaves room for a busy shared disk
    # and still catches a request-per-round-trip regression.
    assert elapsed < 15, f"the branch switch took {elapsed:.1f} s"
    print(f"\nbranch switch: {len(report.plan.operations)} operations in {elapsed:.2f} s")
    assert_converged(pair)
