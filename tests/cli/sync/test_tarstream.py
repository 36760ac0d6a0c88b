"""The upload archive's headers and the placing script's answers, without a pod.

The sshd tests (test_stream_sshd.py) run the same archives through a real `tar -x` and Perl.
"""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devspace.sync.tarstream import END, header, member, place_list, placed

NAMES = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0/"), min_size=1)


@given(
    name=st.lists(NAMES, min_size=1, max_size=4).map("/".join),
    size=st.integers(0, 8**11 - 1),
    mode=st.sampled_from([0o644, 0o755, 0o600]),
    mtime=st.integers(-(2**33), 2**34),
)
def test_a_header_is_what_tarfile_writes(name: str, size: int, mode: int, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, mtime
    expected = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")

    assert header(name.encode(), size, mode, mtime) == expected


def test_an_archive_reads_back_with_names_modes_and_times() -> None:
    long = "d/" + "x" * 150
    archive = member(b"a.txt", b"hello", 0o644, 1_700_000_000) + member(
        long.encode(), b"", 0o755, 5
    )

    with tarfile.open(fileobj=io.BytesIO(archive + END)) as tar:
        read = [(m.name, m.mode, m.mtime, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]

    assert read == [("a.txt", 0o644, 1_700_000_000, b"hello"), (long, 0o755, 5, b"")]


def test_the_place_list_pairs_names_with_nul_bytes() -> None:
    assert place_list([(b"t1", b"a"), (b"d/t2", b"d/new\nline")]) == b"t1\0a\0d/t2\0d/new\nline\0"


def test_answers_are_read_in_order() -> None:
    assert placed(b"0\0P\0X\0ENo space left on device\0", 4) == [
        None,
        "P",
        "X",
        "ENo space left on device",
    ]
    assert placed(b"", 0) == []


@pytest.mark.parametrize("output", [b"0\0", b"0\0P\0X\0", b"0\0P"])
def test_answers_of_the_wrong_number_are_refused(output: bytes) -> None:
    with pytest.raises(ValueError, match="answered"):
        placed(output, 2)
