"""The local scan on real trees, and the remote listing: real `find` output and hostile bytes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devspace.sync.errors import ListingError, ScanError
from devspace.sync.once import scan_ahead
from devspace.sync.plan import plan
from devspace.sync.policy import IgnoreRules
from devspace.sync.scan import (
    LISTING_HEADER,
    add_digests,
    file_digest,
    listing_command,
    parse_listing,
    scan,
)
from devspace.sync.snapshot import DIRECTORY, Ancestor, Entry, Kind, Side, Snapshot

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes and names")


def build(root: Path) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("print('hi')\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "notes.txt").write_text("notes")
    (root / "node_modules" / "left-pad").mkdir(parents=True)
    (root / "node_modules" / "left-pad" / "index.js").write_text("")


@posix_only
def test_scan_records_files_directories_sizes_and_the_executable_bit(tmp_path: Path) -> None:
    build(tmp_path)

    snapshot, _ = scan(tmp_path, IgnoreRules())

    assert set(snapshot) == {"src", "src/pkg", "src/pkg/mod.py", "run.sh", "notes.txt"}
    assert snapshot["src"] == DIRECTORY
    mod = snapshot["src/pkg/mod.py"]
    assert (mod.kind, mod.size, mod.executable) == (Kind.FILE, 12, False)
    assert mod.mtime_ns == (tmp_path / "src/pkg/mod.py").stat().st_mtime_ns
    assert snapshot["run.sh"].executable is True
    assert snapshot.ignored == {"node_modules"}


def test_an_ignored_directory_is_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path)
    read: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: str) -> object:
        read.append(os.path.relpath(path, tmp_path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", recording_scandir)

    scan(tmp_path, IgnoreRules())

    assert sorted(read) == [".", "src", os.path.join("src", "pkg")]


@posix_only
def test_a_symlink_out_of_the_root_is_frozen_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    (outside / "secret" / "key").write_text("k")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "target.txt").write_text("t")
    (root / "escape").symlink_to("../outside")
    (root / "sub" / "up-and-out").symlink_to("../../outside/secret")
    (root / "sub" / "absolute").symlink_to(root / "target.txt")
    (root / "sub" / "inside").symlink_to("../target.txt")
    (root / "loop").symlink_to(".")

    snapshot, _ = scan(root, IgnoreRules())

    assert snapshot["sub/inside"] == Entry(Kind.SYMLINK, target="../target.txt")
    assert snapshot["loop"] == Entry(Kind.SYMLINK, target=".")
    assert set(snapshot.frozen) == {"escape", "sub/up-and-out", "sub/absolute"}
    assert "outside the sync root" in snapshot.frozen["escape"]
    assert "absolute" in snapshot.frozen["sub/absolute"]
    assert not [p for p in snapshot if "secret" in p or p.startswith("escape/")]


@posix_only
def test_special_files_and_refused_names_are_frozen(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        (tmp_path / "back\\slash").write_text("x")
        os.mkdir(os.fsencode(tmp_path) + b"/latin1-\xe9")

        snapshot, _ = scan(tmp_path, IgnoreRules())

    assert len(snapshot) == 0
    assert set(snapshot.frozen) == {"fifo", "sock", "back\\slash", "latin1-\udce9"}
    assert "backslash" in snapshot.frozen["back\\slash"]
    assert "UTF-8" in snapshot.frozen["latin1-\udce9"]


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root reads every directory"
)
def test_an_unreadable_directory_is_frozen_not_taken_for_empty(tmp_path: Path) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "file").write_text("x")
    (tmp_path / "locked").chmod(0)
    try:
        snapshot, _ = scan(tmp_path, IgnoreRules())
    finally:
        (tmp_path / "locked").chmod(0o755)

    assert "locked" not in snapshot
    assert "cannot be read" in snapshot.frozen["locked"]


def test_nested_gitignore_files_apply_below_their_directory(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.log\n")
    (tmp_path / "web" / "dist").mkdir(parents=True)
    (tmp_path / "web" / ".gitignore").write_text("dist/\n!keep.log\n")
    (tmp_path / "web" / "dist" / "bundle.js").write_text("")
    (tmp_path / "web" / "keep.log").write_text("")
    (tmp_path / "web" / "drop.log").write_text("")
    (tmp_path / "dist").mkdir()
    (tmp_path / "top.log").write_text("")

    snapshot, rules = scan(tmp_path, IgnoreRules.load(tmp_path))

    assert set(snapshot) == {".gitignore", "web", "web/.gitignore", "web/keep.log", "dist"}
    assert snapshot.ignored == {"web/dist", "web/drop.log", "top.log"}
    assert rules.gitignores["web"] == ("dist/", "!keep.log")


def test_a_missing_root_is_an_error_not_an_empty_tree(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="missing"):
        scan(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(ScanError, match="not a directory"):
        scan(tmp_path / "file")


def test_a_scan_ahead_sees_what_a_scan_sees_and_fails_the_same_way(tmp_path: Path) -> None:
    build(tmp_path)
    (tmp_path / ".gitignore").write_text("*.txt\n")

    ahead = scan_ahead(tmp_path, ignore=("node_modules/",)).result(timeout=10)

    expected = scan(tmp_path, IgnoreRules.load(tmp_path, extra=("node_modules/",)))
    assert ahead.snapshot == expected.snapshot
    assert ahead.snapshot.ignored == {"notes.txt", "node_modules"}
    assert scan_ahead(tmp_path, gitignore=False).result(timeout=10).snapshot.get("notes.txt")
    with pytest.raises(ScanError, match="missing"):
        scan_ahead(tmp_path / "nope").result(timeout=10)


def test_digests_are_sha256_of_the_content(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"abc")
    snapshot, _ = scan(tmp_path)

    hashed = add_digests(tmp_path, snapshot, ["a", "missing"])

    expected = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_digest(tmp_path / "a") == expected
    assert hashed["a"].digest == expected


# --- the remote listing --------------------------------------------------------------------


def run_listing(root: Path, prune: tuple[str, ...] = ()) -> bytes:
    command = listing_command(str(root), prune)
    return subprocess.run(["sh", "-c", command], check=True, capture_output=True).stdout


@posix_only
def test_the_listing_of_a_tree_parses_to_the_same_snapshot_as_a_scan(tmp_path: Path) -> None:
    build(tmp_path)
    (tmp_path / "src" / "name with\ttab and\nnewline").write_text("odd")
    (tmp_path / "src" / "link").symlink_to("pkg/mod.py")
    (tmp_path / "escape").symlink_to("/etc")
    (tmp_path / "back\\slash").write_text("")
    os.mkfifo(tmp_path / "fifo")
    rules = IgnoreRules()

    listed = parse_listing(run_listing(tmp_path, prune=("node_modules",)), rules)
    scanned, _ = scan(tmp_path, rules)

    assert listed == scanned
    assert listed.frozen == scanned.frozen
    assert listed.ignored == {"node_modules"}


@posix_only
def test_a_pruned_directory_that_the_rules_keep_is_frozen(tmp_path: Path) -> None:
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "lib.c").write_text("")

    listed = parse_listing(run_listing(tmp_path, prune=("vendor",)), IgnoreRules())

    assert "pruned" in listed.frozen["vendor"]
    assert "vendor" not in listed
    assert "vendor/lib.c" not in listed


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root reads every directory"
)
def test_an_unreadable_remote_directory_is_frozen_not_taken_for_empty(tmp_path: Path) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "file").write_text("x")
    (tmp_path / "locked").chmod(0)
    try:
        listed = parse_listing(run_listing(tmp_path))
    finally:
        (tmp_path / "locked").chmod(0o755)

    assert "locked" not in listed
    assert "cannot be read" in listed.frozen["locked"]


def test_unlisted_directories_are_frozen_unless_the_rules_ignore_them() -> None:
    data = LISTING_HEADER + b"U\t700\t1\t1.0\tlocked\0\0" + b"P\t755\t1\t1.0\tnode_modules\0\0"
    data += b"P\t755\t1\t1.0\tvendor\0\0"

    listed = parse_listing(data, IgnoreRules())

    assert listed.ignored == {"node_modules"}
    assert set(listed.frozen) == {"locked", "vendor"}


@posix_only
def test_prune_names_are_literal_and_an_empty_root_is_an_empty_tree(tmp_path: Path) -> None:
    assert len(parse_listing(run_listing(tmp_path))) == 0
    (tmp_path / "[x]*").mkdir()
    (tmp_path / "[x]*" / "inside").write_text("")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "inside").write_text("")

    listed = parse_listing(run_listing(tmp_path, prune=("[x]*",)), IgnoreRules(["\\[x\\]\\*/"]))

    assert set(listed) == {"x", "x/inside"}
    assert listed.ignored == {"[x]*"}


def test_a_missing_remote_root_has_no_header(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", "-c", listing_command(str(tmp_path / "gone"))], capture_output=True, check=False
    )
    assert result.returncode != 0
    with pytest.raises(ListingError, match="missing"):
        parse_listing(result.stdout)


def record(kind: str, path: bytes, *, link: bytes = b"", size: bytes = b"1") -> bytes:
    return kind.encode() + b"\t644\t" + size + b"\t1700000000.5\t" + path + b"\0" + link + b"\0"


def test_hostile_names_in_a_listing_are_refused() -> None:
    data = LISTING_HEADER + b"".join(
        [
            record("d", b"ok"),
            record("f", b"ok/file"),
            record("f", b"../escape"),
            record("f", b"ok/../../escape"),
            record("f", b"/etc/passwd"),
            record("f", b"ok//double"),
            record("f", b"./dot"),
            record("f", b"ok/file/child"),  # below a file
            record("f", b"nowhere/child"),  # parent never listed
            record("f", b"ok/file"),  # twice
            record("f", b"ok\\..\\..\\win"),
            record("l", b"ok/link-out", link=b"../../etc"),
            record("l", b"ok/link-abs", link=b"/etc/passwd"),
            record("l", b"ok/link-back", link=b"..\\..\\x"),
            record("d", b"bad\\dir"),
            record("f", b"bad\\dir/inside"),  # below a frozen directory: silently covered
        ]
    )

    snapshot = parse_listing(data)

    assert set(snapshot) == {"ok", "ok/file"}
    assert set(snapshot.frozen) == {
        "ok\\..\\..\\win",
        "ok/link-out",
        "ok/link-abs",
        "ok/link-back",
        "bad\\dir",
    }
    assert [path for path, _ in snapshot.rejected] == [
        "../escape",
        "ok/../../escape",
        "/etc/passwd",
        "ok//double",
        "./dot",
        "ok/file/child",
        "nowhere/child",
        "ok/file",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no header"),
        (b"devspace-listing-0\0", "no header"),
        (LISTING_HEADER + record("f", b"a")[:-1], "truncated"),
        (LISTING_HEADER + record("f", b"a")[:-6], "truncated"),
        (LISTING_HEADER + b"f\t644\ta\0\0", "malformed"),
        (LISTING_HEADER + record("f", b"a", size=b"-1"), "size"),
        (LISTING_HEADER + b"f\t9z9\t1\t1.0\ta\0\0", "mode"),
        (LISTING_HEADER + b"f\t644\t1\t1.x\ta\0\0", "mtime"),
    ],
)
def test_a_damaged_listing_is_an_error_not_a_smaller_tree(data: bytes, message: str) -> None:
    with pytest.raises(ListingError, match=message):
        parse_listing(data)


def test_listing_mtimes_keep_nanoseconds_without_float_rounding() -> None:
    data = LISTING_HEADER + b"f\t755\t3\t1712345678.1234567890\ta\0\0"
    data += b"f\t600\t3\t-1.5000000000\tb\0\0"

    snapshot = parse_listing(data)

    assert snapshot["a"] == Entry(Kind.FILE, 3, 1712345678_123456789, True)
    assert snapshot["b"] == Entry(Kind.FILE, 3, -1_500_000_000, False)


def test_the_listing_is_filtered_by_the_same_rules_as_the_scan() -> None:
    data = LISTING_HEADER + record("d", b".git") + record("f", b".git/HEAD")
    data += record("d", b"web") + record("f", b"web/app.log") + record("f", b"web/app.js")
    rules = IgnoreRules().with_gitignore("web", ["*.log"])

    snapshot = parse_listing(data, rules)

    assert set(snapshot) == {"web", "web/app.js"}
    assert snapshot.ignored == {".git", "web/app.log"}


@posix_only
def test_a_link_out_of_the_root_is_never_uploaded_and_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "id_rsa").write_text("private")
    (root / "keys").symlink_to("../secrets")
    (root / "app.py").write_text("")

    local, _ = scan(root)
    result = plan(local, Snapshot(), Ancestor())

    assert [op.path for op in result.operations] == ["app.py"]
    assert [(s.path, s.side) for s in result.skipped] == [("keys", Side.LOCAL)]
