"""Reading a small file for an upload stream: the planned file whole, or an error, never a mix.

`read_small` is the fast path of `podstream.source` (no file object); it must refuse what
`source` refuses: a file that changed since the scan, grew or shrank, or became a link.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from devspace.sync.operations import Upload
from devspace.sync.podstream import Changed, read_small
from devspace.sync.snapshot import Entry, Kind


def planned(root: Path, path: str) -> Upload:
    """An upload of `path` as a scan would have planned it now."""
    info = os.lstat(root / path)
    return Upload(path, Entry(Kind.FILE, info.st_size, info.st_mtime_ns, False), None)


def test_the_planned_file_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.py").write_bytes(b"x" * 5000)
    (tmp_path / "empty").write_bytes(b"")

    assert read_small(tmp_path, planned(tmp_path, "d/a.py")) == b"x" * 5000
    assert read_small(tmp_path, planned(tmp_path, "empty")) == b""


def test_a_file_that_grew_since_the_plan_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"one")
    op = planned(tmp_path, "a")
    (tmp_path / "a").write_bytes(b"one and more")
    os.utime(tmp_path / "a", ns=(op.source.mtime_ns, op.source.mtime_ns))  # same mtime

    with pytest.raises(Changed):
        read_small(tmp_path, op)


def test_a_file_that_shrank_under_the_same_size_and_mtime_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"12345")
    op = planned(tmp_path, "a")
    # What the plan saw claims more bytes than the file holds: the read comes up short.
    claimed = Upload("a", op.source._replace(size=6), None)

    with pytest.raises(Changed):
        read_small(tmp_path, claimed)


def test_a_file_written_since_the_plan_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"old")
    op = planned(tmp_path, "a")
    (tmp_path / "a").write_bytes(b"new")
    later = op.source.mtime_ns + 5_000_000_000
    os.utime(tmp_path / "a", ns=(later, later))

    with pytest.raises(Changed):
        read_small(tmp_path, op)


def test_a_link_that_replaced_the_file_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"mine")
    op = planned(tmp_path, "a")
    (tmp_path / "secret").write_bytes(b"mine")
    os.utime(tmp_path / "secret", ns=(op.source.mtime_ns, op.source.mtime_ns))  # a look-alike
    os.remove(tmp_path / "a")
    os.symlink(tmp_path / "secret", tmp_path / "a")

    with pytest.raises(OSError, match="Too many levels of symbolic links") as refused:
        read_small(tmp_path, op)
    assert refused.value.errno == errno.ELOOP  # O_NOFOLLOW refused the link
