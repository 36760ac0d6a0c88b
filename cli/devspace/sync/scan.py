"""Getting the trees: a scan of the laptop's folder, and the pod's folder from one listing.

The local scan walks with `os.scandir` (the file type comes free with the directory read;
only files cost a `stat`), never follows a symlink, and applies the ignore rules on the way
down so an ignored directory is never read. The remote side runs `listing_command` in the pod
— one round trip for the whole tree — and `parse_listing` turns its output into the same
`Snapshot`, refusing names a hostile pod could use to reach outside the root.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import sys
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import NamedTuple

from devspace.sync.errors import ListingError, ScanError
from devspace.sync.policy import (
    GITIGNORE,
    IgnoreRules,
    path_problem,
    symlink_problem,
    unsyncable_name,
)
from devspace.sync.snapshot import DIRECTORY, Entry, Kind, Snapshot, parent

_WINDOWS = sys.platform == "win32"
_REPARSE_POINT = 0x400  # FILE_ATTRIBUTE_REPARSE_POINT: junctions and other links on Windows


class LocalScan(NamedTuple):
    """A scan's result: the snapshot, and the rules extended by the nested `.gitignore` files.

    Filter the remote listing with `rules`, so both sides are seen through the same rules.
    """

    snapshot: Snapshot
    rules: IgnoreRules


class _Tree:
    """The containers a scan or a listing fills in, and the snapshot they become."""

    __slots__ = ("entries", "frozen", "ignored", "rejected")

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.frozen: dict[str, str] = {}
        self.ignored: set[str] = set()
        self.rejected: list[tuple[str, str]] = []

    def snapshot(self) -> Snapshot:
        return Snapshot._adopt(self.entries, self.frozen, self.ignored, self.rejected)


def scan(root: Path, rules: IgnoreRules | None = None) -> LocalScan:
    """Snapshot the tree under `root` (which may itself be a symlink to a directory).

    Raises ScanError if `root` is missing or not a readable directory. Anything below it that
    cannot be read is recorded in `Snapshot.frozen` instead, so it is left alone rather than
    taken for deleted.
    """
    rules = rules if rules is not None else IgnoreRules()
    tree = _Tree()
    top = os.fspath(root)
    if not os.path.isdir(top):
        missing = not os.path.exists(top)
        raise ScanError(f"{root} is missing" if missing else f"{root} is not a directory")
    rules = _walk(tree, [("", top)], rules, root)
    return LocalScan(tree.snapshot(), rules)


def scan_scopes(root: Path, scopes: Collection[str], rules: IgnoreRules) -> Snapshot:
    """Snapshot only the subtrees `scopes` of `root`, with their parent directories.

    Every parent of a scope is recorded as a directory, so the planner sees a tree whose
    other parts simply are not there. `rules` must already hold the nested `.gitignore` files
    above the scopes (a full `scan`'s rules do).

    Raises ScanError if `root` is not a readable directory, ScopeMoved(path) if a parent of
    a scope is not a plain directory any more (widen the scope to that path and try again).
    """
    top = os.fspath(root)
    if not os.path.isdir(top):
        raise ScanError(f"{root} is missing or not a directory")
    tree = _Tree()
    pending: list[tuple[str, str]] = []
    for scope in sorted(scopes, key=lambda p: p.count("/")):
        up, parents = parent(scope), []
        while up:
            parents.append(up)
            up = parent(up)
        for directory in reversed(parents):
            if directory not in tree.entries:
                if not os.path.isdir(_full(top, directory)) or os.path.islink(
                    _full(top, directory)
                ):
                    raise ScopeMoved(directory)
                tree.entries[directory] = DIRECTORY
        up = parent(scope)
        name = scope.rpartition("/")[2]
        try:
            with os.scandir(_full(top, up)) as listing:
                child = next((c for c in listing if c.name == name), None)
            if child is not None and _add_child(tree, scope, child, rules):
                pending.append((scope, child.path))
        except FileNotFoundError:
            raise ScopeMoved(up) from None
        except OSError as error:
            tree.frozen[scope] = f"cannot be read ({error.strerror})"
    _walk(tree, pending, rules, root)
    return tree.snapshot()


class ScopeMoved(ScanError):
    """A parent of a scanned scope is no longer a directory: widen the scope to `path`."""

    def __init__(self, path: str) -> None:
        """Name the parent that moved."""
        super().__init__(f"{path!r} is no longer a directory")
        self.path = path


def _full(top: str, path: str) -> str:
    return os.path.join(top, *path.split("/")) if path else top


def _walk(
    tree: _Tree, pending: list[tuple[str, str]], rules: IgnoreRules, root: Path
) -> IgnoreRules:
    """Walk the directories in `pending` (path, full path) into `tree`; return the rules
    extended by the `.gitignore` files met."""
    while pending:
        directory, absolute = pending.pop()
        try:
            with os.scandir(absolute) as listing:
                children = list(listing)
        except OSError as error:
            if not directory:
                raise ScanError(f"cannot read {root}: {error.strerror}") from error
            tree.frozen[directory] = f"cannot be read ({error.strerror})"
            del tree.entries[directory]
            continue
        if (
            rules.use_gitignore
            and directory not in rules.gitignores
            and any(child.name == GITIGNORE for child in children)
        ):
            try:
                rules = rules.with_gitignore(directory, _read_gitignore(absolute))
            except OSError as error:
                # Without its rules we cannot tell what this directory hides: leave it alone.
                tree.frozen[directory] = f"its .gitignore cannot be read ({error.strerror})"
                del tree.entries[directory]
                continue
        prefix = directory + "/" if directory else ""
        for child in children:
            path = prefix + child.name
            try:
                if _add_child(tree, path, child, rules):
                    pending.append((path, child.path))
            except FileNotFoundError:
                continue  # deleted while we looked: absent is the truth now
            except OSError as error:
                tree.frozen[path] = f"cannot be read ({error.strerror})"
    return rules


def _read_gitignore(directory: str) -> list[str]:
    with open(os.path.join(directory, GITIGNORE), encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


def _add_child(tree: _Tree, path: str, child: os.DirEntry[str], rules: IgnoreRules) -> bool:
    """Record one directory entry; return whether it is a directory to descend into.

    Raises OSError if it cannot be examined.
    """
    is_link = child.is_symlink()
    is_dir = not is_link and child.is_dir(follow_symlinks=False)
    if rules.ignores(path, is_dir):
        tree.ignored.add(path)
        return False
    problem = unsyncable_name(child.name)
    if is_link and not problem:
        target = os.readlink(child.path)
        if _WINDOWS:  # pragma: no cover - Windows only
            target = target.replace("\\", "/")
        problem = symlink_problem(path, target)
        # A link's own mtime says nothing about what it points to: the target is all.
        entry = Entry(Kind.SYMLINK, target=target)
    elif is_dir:
        problem = problem or _reparse_problem(child)
        entry = DIRECTORY
    elif child.is_file(follow_symlinks=False):
        info = child.stat(follow_symlinks=False)
        executable = None if _WINDOWS else bool(info.st_mode & stat.S_IXUSR)
        entry = Entry(Kind.FILE, info.st_size, info.st_mtime_ns, executable)
    else:
        problem = problem or "not a regular file, directory or symlink"
    if problem:
        tree.frozen[path] = problem
        return False
    tree.entries[path] = entry
    return is_dir


def _reparse_problem(child: os.DirEntry[str]) -> str | None:
    """On Windows a junction is a directory to `is_dir` yet leads anywhere; never descend."""
    if not _WINDOWS:
        return None
    attributes = getattr(child.stat(follow_symlinks=False), "st_file_attributes", 0)
    return "a junction or other reparse point" if attributes & _REPARSE_POINT else None


def file_digest(path: Path) -> str:
    """The content hash sync compares files by: `sha256:<hex>` (`sha256sum` gives the same hex).

    Raises OSError if the file cannot be read.
    """
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def add_digests(root: Path, snapshot: Snapshot, paths: Iterable[str]) -> Snapshot:
    """`snapshot` with the content hash of each of `paths` that is a file without one.

    Files that vanished or cannot be read keep no digest (the planner then assumes they
    differ, which at worst makes a conflict, never a loss).
    """
    digests: dict[str, str] = {}
    for path in paths:
        entry = snapshot.get(path)
        if entry is None or entry.kind is not Kind.FILE or entry.digest is not None:
            continue
        try:
            digests[path] = file_digest(root.joinpath(*path.split("/")))
        except OSError:
            continue
    return snapshot.with_digests(digests) if digests else snapshot


# --- the remote listing --------------------------------------------------------------------

LISTING_HEADER = b"devspace-listing-1\0"
# type, mode (octal), size, mtime (seconds with a fraction), path relative to the root, then
# the link target (empty for anything but a link). NUL ends both: it is the one byte no path
# can contain, and tabs cannot appear in the first four fields. Two extra types: P for a
# directory pruned by name, U for one the listing user cannot read; find descends into
# neither, and the parser must know their contents were not listed.
_FIELDS = r"\t%m\t%s\t%T@\t%P\0"
_UNREADABLE = rf"\( -type d ! \( -readable -executable \) -printf 'U{_FIELDS}\0' -prune \)"
_EVERYTHING = rf"-printf '%y{_FIELDS}%l\0'"


def listing_command(root: str, prune: Collection[str] = ()) -> str:
    """A POSIX shell command (GNU find) that prints the listing of `root` for `parse_listing`.

    Directories named in `prune` (say `node_modules`) are listed but not descended into, which
    saves listing what the ignore rules drop anyway; one the rules do not ignore is frozen.
    Without the header in its output, the root was missing.
    """
    pruning = ""
    if prune:
        names = " -o ".join(f"-name {shlex.quote(_literal(name))}" for name in sorted(prune))
        pruning = rf"\( -type d \( {names} \) -printf 'P{_FIELDS}\0' -prune \) -o "
    return (
        f"cd -- {shlex.quote(root)} && printf 'devspace-listing-1\\0' && "
        f"find . -mindepth 1 {pruning}{_UNREADABLE} -o {_EVERYTHING}"
    )


def _literal(name: str) -> str:
    """`name` as a find -name pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[\\" else c for c in name)


def parse_listing(data: bytes, rules: IgnoreRules | None = None, *, strip: bytes = b"") -> Snapshot:
    """The snapshot that a `listing_command` output describes, filtered by `rules`.

    Names that cannot be addressed under a root (`..`, absolute, empty parts) and entries whose
    parent is not a listed directory are dropped and described in `Snapshot.rejected`; names
    sync refuses (backslashes, not UTF-8), links leading outside the root and special files are
    recorded in `Snapshot.frozen`, as are directories whose contents were not listed (pruned
    but not ignored, or unreadable).

    Raises ListingError if the output lacks its header (the root is missing) or is truncated
    or malformed: a partial listing must never be mistaken for a tree with files deleted.
    `strip` is removed from the front of every path (`./` for a listing of several scopes).
    """
    if not data.startswith(LISTING_HEADER):
        raise ListingError("the remote listing has no header: the remote folder is missing")
    body = data[len(LISTING_HEADER) :]
    if body and not body.endswith(b"\0"):
        raise ListingError("the remote listing is truncated")
    fields = body[:-1].split(b"\0") if body else []
    if len(fields) % 2:
        raise ListingError("the remote listing is truncated")
    listing = _Listing(rules if rules is not None else IgnoreRules())
    for index in range(0, len(fields), 2):
        meta = fields[index].split(b"\t", 4)
        if len(meta) != 5:
            raise ListingError(f"record {index // 2 + 1} of the remote listing is malformed")
        if strip and meta[4].startswith(strip):
            meta[4] = meta[4][len(strip) :]
        listing.add(*meta, link=fields[index + 1])
    return listing.tree.snapshot()


_KINDS = {b"f": Kind.FILE, b"d": Kind.DIR, b"l": Kind.SYMLINK, b"P": Kind.DIR, b"U": Kind.DIR}
_UNLISTED = {
    b"P": "not listed (pruned, yet not ignored by the rules)",
    b"U": "cannot be read in the pod",
}


class _Listing:
    """Checks one listed record at a time against what came before it."""

    def __init__(self, rules: IgnoreRules) -> None:
        self.tree = _Tree()
        self.rules = rules
        self.covered: set[str] = set()  # below a frozen or ignored path: nothing to record

    def add(
        self, letter: bytes, mode: bytes, size: bytes, mtime: bytes, raw: bytes, *, link: bytes
    ) -> None:
        """Record one listed path. Raises ListingError if its numbers are malformed."""
        tree, path = self.tree, raw.decode("utf-8", "surrogateescape")
        if problem := path_problem(path):
            tree.rejected.append((path, problem))
            return
        up = parent(path)
        if up in self.covered:
            self.covered.add(path)
            return
        if path in tree.entries or path in tree.frozen or path in tree.ignored:
            tree.rejected.append((path, "listed twice"))
            return
        if up and tree.entries.get(up) != DIRECTORY:
            tree.rejected.append((path, "its parent is not a listed directory"))
            return
        kind = _KINDS.get(letter)
        if self.rules.ignores(path, kind is Kind.DIR):
            tree.ignored.add(path)
            self.covered.add(path)
            return
        name = path.rpartition("/")[2]
        problem = unsyncable_name(name)
        entry = DIRECTORY
        if kind is Kind.SYMLINK:
            target = link.decode("utf-8", "surrogateescape")
            problem = problem or symlink_problem(path, target)
            entry = Entry(Kind.SYMLINK, target=target)
        elif kind is Kind.FILE:
            entry = Entry(Kind.FILE, _number(size, path), _mtime_ns(mtime, path), _exec(mode, path))
        elif kind is None:
            problem = problem or "not a regular file, directory or symlink"
        else:
            problem = problem or _UNLISTED.get(letter)
        if problem:
            tree.frozen[path] = problem
            self.covered.add(path)
        else:
            tree.entries[path] = entry


def _number(text: bytes, path: str) -> int:
    if not text.isdigit():
        raise ListingError(f"the remote listing has a malformed size for {path!r}")
    return int(text)


def _exec(mode: bytes, path: str) -> bool:
    try:
        return bool(int(mode, 8) & stat.S_IXUSR)
    except ValueError:
        raise ListingError(f"the remote listing has a malformed mode for {path!r}") from None


def _mtime_ns(text: bytes, path: str) -> int:
    """`1712345678.1234567890` (find's %T@) as integer nanoseconds, without float rounding."""
    negative = text.startswith(b"-")
    seconds, _, fraction = text.lstrip(b"-").partition(b".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()):
        raise ListingError(f"the remote listing has a malformed mtime for {path!r}")
    ns = int(seconds) * 1_000_000_000 + int(fraction[:9].ljust(9, b"0"))
    return -ns if negative else ns
