"""How `PodWriter.writes` cuts a plan's creations into windows, without a pod.

Each window is one check of the pod, then the writes: tar streams put their new files in
place themselves, so a window of small files going by tar may be far larger than one whose
files are renamed one by one over SFTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from devspace.sync.operations import MakeDir, Upload
from devspace.sync.outcome import Observed
from devspace.sync.podwrite import TAR_WINDOW_FILES, WINDOW_FILES, PodWriter
from devspace.sync.snapshot import Entry, Kind, Side, Snapshot


def uploads(count: int, size: int = 100) -> list[Upload]:
    return [Upload(f"f{n}", Entry(Kind.FILE, size, 0, False), None) for n in range(count)]


def windows(ops: Sequence[MakeDir | Upload], tar: bool | None = None) -> list[int]:
    """The sizes of the windows `writes` makes of `ops`."""
    writer = PodWriter(None, Path("."), Observed(Snapshot()), tar=tar)  # type: ignore[arg-type]
    sizes: list[int] = []
    writer._window = lambda window: sizes.append(len(window))  # type: ignore[method-assign]
    writer.writes(ops)
    return sizes


def test_small_files_going_by_tar_are_one_window() -> None:
    assert windows(uploads(1500)) == [1500]


def test_files_going_over_sftp_keep_windows_of_a_thousand() -> None:
    assert windows(uploads(1500), tar=False) == [WINDOW_FILES, 1500 - WINDOW_FILES]


def test_directories_alone_keep_windows_of_a_thousand() -> None:
    ops = [MakeDir(Side.REMOTE, f"d{n}", None) for n in range(1200)]

    assert windows(ops) == [WINDOW_FILES, 200]


@pytest.mark.parametrize("tar", [None, True])
def test_even_a_tar_window_has_a_bound(tar: bool | None) -> None:
    assert windows(uploads(TAR_WINDOW_FILES + 10), tar=tar) == [TAR_WINDOW_FILES, 10]
