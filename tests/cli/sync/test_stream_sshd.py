"""Uploads as tar streams against the real sidecar: Debian's sshd, its tar and its Perl.

Batches of small files and every large file go to the pod as tar streams whose own command
puts new files in place (see devspace.sync.tarstream); these tests drive that command
directly and through whole passes, including the ways it must refuse to write.
"""

# ruff: noqa: F811 - test_apply_sshd's fixtures are imported, then named as parameters

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Sequence

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
from devspace.sync import remote, tarstream
from devspace.sync.apply import apply
from devspace.sync.operations import Upload
from devspace.sync.plan import PlanOptions, plan
from devspace.sync.podwrite import STREAMS
from devspace.sync.policy import IgnoreRules
from devspace.sync.remote import PodFolder
from devspace.sync.scan import scan
from devspace.sync.tarstream import END, member, place_list, placed

pytestmark = [pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(120)]
OPTIONS = PlanOptions(conflict_stamp="T")
LARGE = 9 << 20  # over podwrite.STREAM_MIN_FILE: streamed even alone


def test_the_stream_places_new_files_but_never_over_a_file_or_through_a_link(
    pair: Pair, shell: PodFolder
) -> None:
    outside = f"/tmp/outside-{uuid.uuid4().hex[:8]}"
    sh(shell, pair, f"mkdir {outside} && ln -s {outside} linked && printf mine > taken.txt")
    files = [
        (b".devspace-tmp-t1", b"new.txt", b"new"),
        (b".devspace-tmp-t2", b"taken.txt", b"laptop"),
        (b".devspace-tmp-t3", b"linked/evil.txt", b"evil"),
    ]
    archive = b"".join(member(t, data, 0o644, 1_700_000_000) for t, _, data in files)
    listed = place_list((t, target) for t, target, _ in files)
    archive += member(b".devspace-tmp-list", listed, 0o600, 0) + END

    output = pair.pod.stream_tar([archive], ".devspace-tmp-list")

    assert placed(output, 3) == [None, "X", "P"]
    assert sh(shell, pair, "ls -A").split() == ["linked", "new.txt", "taken.txt"]
    assert sh(
        shell, pair, "cat new.txt; echo; cat taken.txt; echo; stat -c %Y new.txt"
    ).split() == [
        "new",
        "mine",
        "1700000000",
    ]
    assert shell.run(f"ls -A {outside}") == b""


def test_without_perl_in_the_pod_new_files_are_renamed_over_sftp(
    pair: Pair, shell: PodFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def without_perl(root: str, place: str | None, cleanup: Sequence[str] = ()) -> str:
        command = tarstream.extract_command(root, place, cleanup)
        return command.replace("command -v perl", "command -v devspace-no-such-perl")

    monkeypatch.setattr(remote, "extract_command", without_perl)
    # Two streams run on threads of their own; SFTP requests from both at once on the one
    # channel read each other's answers (a pass that hung for ever in CI once): only the
    # pass's own thread may use SFTP.
    sftp_threads: set[str] = set()
    pipeline = PodFolder.pipeline

    def recorded(folder: PodFolder) -> remote.Pipeline:
        sftp_threads.add(threading.current_thread().name)
        return pipeline(folder)

    monkeypatch.setattr(PodFolder, "pipeline", recorded)
    for n in range(200):
        write(pair.local / f"pkg{n % 7}" / f"mod{n}.py", f"# {n}\n")

    report = pair.sync(tar=True)

    assert sftp_threads == {threading.current_thread().name}
    assert report.settled
    assert report.applied is not None
    assert len(report.applied.done) == 207
    assert ".devspace-tmp-" not in sh(shell, pair, "find . -name '.devspace-tmp-*'")
    assert_converged(pair)


def test_a_large_file_streams_alone_with_its_mode_and_mtime_then_is_replaced(
    pair: Pair, shell: PodFolder
) -> None:
    first, second = os.urandom(LARGE), os.urandom(LARGE + 1000)
    write(pair.local / "bin" / "tool", first, 0o755)
    os.utime(pair.local / "bin" / "tool", ns=(1_700_000_000_500_000_000,) * 2)

    pair.sync()

    assert sh(shell, pair, "stat -c '%a %Y %s' bin/tool; sha256sum < bin/tool").split()[:4] == [
        "755",
        "1700000000",
        str(LARGE),
        hashlib.sha256(first).hexdigest(),
    ]
    write(pair.local / "bin" / "tool", second, 0o755)  # a replacement: renamed after a check

    report = pair.sync()

    assert [type(op) for op in report.plan.operations] == [Upload]
    assert sh(shell, pair, "sha256sum < bin/tool").split()[0] == hashlib.sha256(second).hexdigest()
    assert ".devspace-tmp-" not in sh(shell, pair, "ls -A bin")
    assert_converged(pair)


def test_a_large_file_that_grows_while_streamed_is_not_placed(pair: Pair, shell: PodFolder) -> None:
    path = pair.local / "growing.log"
    write(path, os.urandom(LARGE))
    local = scan(pair.local, IgnoreRules()).snapshot
    remote_snapshot = pair.pod.listing(IgnoreRules())
    planned = plan(local, remote_snapshot, pair.store.load(), OPTIONS)
    grown = [False]

    def grow(_count: int) -> None:
        if not grown[0]:
            grown[0] = True
            with path.open("ab") as log:
                log.write(b"one more line\n")

    result = apply(planned, pair.local, pair.pod, local, remote_snapshot, progress=grow)

    assert [s.operation.path for s in result.stale] == ["growing.log"]
    assert "changed since the plan" in result.stale[0].reason
    assert sh(shell, pair, "ls -A") == ""  # neither the file nor its temporary name
    pair.sync()
    assert sh(shell, pair, "wc -c < growing.log").strip() == str(LARGE + 14)


def test_a_tree_of_many_small_files_goes_in_parallel_streams(
    pair: Pair, shell: PodFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(1500):
        write(pair.local / f"pkg{n % 40}" / f"mod{n}.py", f"# module {n}\n" * (n % 9))
    streams: list[int] = []

    def counted(self: PodFolder, members: object, *args: object) -> bytes:
        streams.append(1)
        return stream_tar(self, members, *args)  # type: ignore[arg-type]

    stream_tar = PodFolder.stream_tar
    monkeypatch.setattr(PodFolder, "stream_tar", counted)

    report = pair.sync()

    assert report.settled
    assert len(streams) == STREAMS  # one window of 1,540 operations (not 1,000 + 540)
    assert sh(shell, pair, "find . -type f | wc -l").strip() == "1500"
    assert_converged(pair)
