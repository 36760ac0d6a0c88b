"""Uploads as tar streams into the pod: many small files, or a large one, per exec channel.

A stream needs one round trip where SFTP needs an answer per file (and per 32 KiB of a large
file), so batches of small files and every large file go this way (see `podwrite` for the
choice, `tarstream` for the archive and the command that extracts it). Each file goes to a
`.devspace-tmp-…` name; new files are put in place by the stream's own command, the rest are
returned to `podwrite`, which renames them after a fresh look at the pod.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from devspace.sync.newtrees import NewTree
from devspace.sync.operations import Upload
from devspace.sync.outcome import Progress, Stale
from devspace.sync.policy import TEMPORARY_PREFIX
from devspace.sync.remote import CMD_REMOVE, ConnectionLost, PodFolder, RemoteError
from devspace.sync.snapshot import Entry, Kind, is_normal_path
from devspace.sync.tarstream import (
    END,
    NO_PERL,
    folder_member,
    header,
    member,
    padding,
    place_list,
    placed,
)

TAR_MAX_FILE = 1 << 20  # bigger files are read in blocks, with bounded memory
CHUNK = 256 * 1024  # tar bytes per channel write: one SSH send per small file costs more
_READ = 1 << 20
# Never follow a link that replaced the file since the scan.
_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)

Staged = tuple[Upload, str, Entry]  # an upload, its temporary name, the entry it will be


def remote_entry(op: Upload) -> Entry:
    """What the pod's listing shows for `op`'s file once written: mtime in whole seconds."""
    seconds = op.source.mtime_ns // 1_000_000_000
    return op.source._replace(mtime_ns=seconds * 1_000_000_000, executable=_executable(op))


def _executable(op: Upload) -> bool:
    if op.source.executable is not None:
        return op.source.executable
    # The laptop cannot tell (Windows): keep what the pod had, or a plain file.
    return bool(op.replaces and op.replaces.kind is Kind.FILE and op.replaces.executable)


def share_of(total: int, streams: int, least: int) -> int:
    """How many of `total` files each stream carries: up to `streams` streams, none with fewer
    than `least` files unless there is only one."""
    return -(-total // max(1, min(streams, total // least)))


def shares(
    ops: Sequence[Upload], trees: Sequence[NewTree], streams: int, least: int
) -> list[tuple[list[Upload], list[NewTree]]]:
    """`ops` and `trees` cut into the shares of up to `streams` streams (see `share_of`); a
    tree stays whole, and the order is kept."""
    share = share_of(len(ops) + sum(len(tree.files) for tree in trees), streams, least)
    cut: list[tuple[list[Upload], list[NewTree]]] = []
    load = share
    units: list[NewTree | Upload] = [*trees, *ops]
    for unit in units:
        if load >= share:
            cut.append(([], []))
            load = 0
        if isinstance(unit, NewTree):
            cut[-1][1].append(unit)
            load += len(unit.files)
        else:
            cut[-1][0].append(unit)
            load += 1
    return cut


def remove_temporaries(pod: PodFolder, paths: Sequence[str]) -> None:
    """Remove leftover temporary files and folders in the pod (a pass cut short).

    Raises ConnectionLost, RemoteError.
    """
    pipe = pod.pipeline()
    sent = [
        (path, pipe.send(CMD_REMOVE, pod.path(path)))
        for path in paths
        if path.rpartition("/")[2].startswith(TEMPORARY_PREFIX) and is_normal_path(path)
    ]
    # What SFTP could not remove is a new folder's (`newtrees`), or already gone.
    folders = [f"./{path}" for path, number in sent if not pipe.wait(number).ok]
    if folders:
        names = " ".join(shlex.quote(name) for name in folders)
        pod.run(f"cd -- {shlex.quote(pod.root)} && rm -rf -- {names}")


def file_mode(executable: bool) -> int:
    """The permission bits a synced file gets in the pod."""
    return 0o755 if executable else 0o644


@dataclass
class StreamResult:
    """What one stream did: files placed, files left to place, and what could not go."""

    placed: list[Staged] = field(default_factory=list)
    staged: list[Staged] = field(default_factory=list)
    stale: list[Stale] = field(default_factory=list)
    placed_trees: list[NewTree] = field(default_factory=list)
    staged_trees: list[NewTree] = field(default_factory=list)
    """New folders extracted under their temporary names but not put in place (no Perl)."""
    leftovers: list[str] = field(default_factory=list)
    """Temporary names in the pod to remove (over SFTP, by the caller: see `TarUpload`)."""


@dataclass
class TarUpload:
    """One tar stream of `named` uploads (each with its temporary name) and of new folders
    sent whole (`trees`, see `newtrees`) into `pod`.

    `place_list` is a fresh temporary name for the list of what the stream's command puts in
    place. `run` may be called on a thread of its own: it touches nothing shared but `progress`.
    """

    pod: PodFolder
    local_root: Path
    named: Sequence[tuple[Upload, str]]
    place_list: str
    progress: Progress | None = None
    trees: Sequence[NewTree] = ()
    result: StreamResult = field(default_factory=StreamResult)
    _unread: set[str] = field(default_factory=set, init=False)  # tree files left out

    def run(self) -> StreamResult:
        """Send the stream and read its answers. Raises ConnectionLost."""
        new = self.trees or any(not op.replaces for op, _ in self.named)
        listed = self.place_list if new else None
        # Removed by the pod if the stream is cut: a large file's part, a new folder's.
        cleanup = [t for op, t in self.named if op.source.size > TAR_MAX_FILE]
        cleanup += [tree.temporary for tree in self.trees]
        streamed: list[Staged] = []
        dropped: list[str] = []  # temporary names whose content is not the planned file
        result = self.result
        try:
            output = self.pod.stream_tar(self._archive(streamed, dropped), listed, cleanup)
        except ConnectionLost:
            raise
        except RemoteError as error:
            self._remove([t for _, t in self.named] + cleanup + ([listed] if listed else []))
            result.stale += [Stale(op, str(error)) for op, _, _ in streamed]
            result.stale += [Stale(op, str(error)) for t in self._sent() for op in t.operations]
            return result
        self._remove(dropped)
        if listed is None or output == NO_PERL:
            self._remove([listed] if listed else [])
            result.staged = streamed
            result.staged_trees = self._sent()
            return result
        result.staged = [s for s in streamed if s[0].replaces]
        self._record([s for s in streamed if not s[0].replaces], output)
        return result

    def _remove(self, names: Sequence[str]) -> None:
        # Left to the caller: streams run on threads of their own, and two SFTP pipelines on
        # one channel at once read each other's answers (one then waits for ever).
        self.result.leftovers += names

    def _archive(self, streamed: list[Staged], dropped: list[str]) -> Iterator[bytes]:
        parts: list[bytes] = []
        size = 0
        now = int(time.time())
        for tree in self.trees:  # each new folder with its content, under its temporary name
            parts.append(folder_member(_raw(tree.temporary), now))
            parts += [folder_member(_raw(tree.inside(op.path)), now) for op in tree.folders]
            for op in tree.files:
                # One that cannot be read is left out: its folder is put in place without it,
                # and the next pass sends it as a new file.
                if (part := self._small_member(op, _raw(tree.inside(op.path)))) is None:
                    self._unread.add(op.path)
                    continue
                parts.append(part)
                size += len(part)
                if size >= CHUNK:
                    yield b"".join(parts)
                    parts, size = [], 0
        for op, temporary in self.named:
            name = _raw(temporary)
            if op.source.size > TAR_MAX_FILE:  # streamed in blocks: bounded memory
                yield b"".join(parts)
                parts, size = [], 0
                sent = yield from self._large_member(op, name)
            else:
                part = self._small_member(op, name)
                sent = part is not None
                if part is not None:
                    parts.append(part)
                    size += len(part)
            if sent:
                streamed.append((op, temporary, remote_entry(op)))
            else:
                dropped.append(temporary)  # not the planned file
            if size >= CHUNK:
                yield b"".join(parts)
                parts, size = [], 0
        if self.trees or any(not op.replaces for op, _ in self.named):
            names = [(tree.temporary, tree.top.path) for tree in self.trees]
            names += [(t, o.path) for o, t, _ in streamed if not o.replaces]
            pairs = [(_raw(t), _raw(target)) for t, target in names]
            parts.append(member(_raw(self.place_list), place_list(pairs), 0o600, 0))
        parts.append(END)
        yield b"".join(parts)

    def _small_member(self, op: Upload, name: bytes) -> bytes | None:
        """The small file `op` uploads as a member named `name`; None, reported stale, if it
        cannot be read as planned."""
        try:
            data = read_small(self.local_root, op)
        except (OSError, Changed) as error:
            self.result.stale.append(Stale(op, f"{op.path!r} could not be read: {error}"))
            return None
        if self.progress:
            self.progress(len(data))
        entry = remote_entry(op)
        return member(name, data, file_mode(bool(entry.executable)), entry.mtime_ns // 10**9)

    def _large_member(self, op: Upload, name: bytes) -> Generator[bytes, None, bool]:
        """Yield a large file as one tar member named `name`; return whether it is the planned
        file (if not, it is reported stale).

        Once its header is out the member must be whole: a file that shrank meanwhile is padded
        with zeros, and its temporary file removed afterwards.
        """
        entry = remote_entry(op)
        mode, mtime = file_mode(bool(entry.executable)), entry.mtime_ns // 10**9
        size, sent = op.source.size, 0
        try:
            with source(self.local_root, op) as file:
                yield header(name, size, mode, mtime)
                while sent < size and (block := file.read(min(_READ, size - sent))):
                    yield block
                    sent += len(block)
                    if self.progress:
                        self.progress(len(block))
        except (OSError, Changed) as error:
            problem: str | None = f"{op.path!r} could not be read: {error}"
        else:
            problem = None if sent == size else f"{op.path!r} could not be read: it shrank"
        if problem is not None:
            self.result.stale.append(Stale(op, problem))
            if sent == 0:
                return False  # nothing of it was sent, not even its header
        while sent < size:
            zeros = min(_READ, size - sent)
            yield bytes(zeros)
            sent += zeros
        yield padding(size)
        return problem is None

    def _sent(self) -> list[NewTree]:
        """The trees as sent: without the files that could not be read (already stale)."""
        if not self._unread:
            return list(self.trees)
        return [
            replace(tree, files=[op for op in tree.files if op.path not in self._unread])
            for tree in self.trees
        ]

    def _record(self, staged: Sequence[Staged], output: bytes) -> None:
        """Record the placing script's answers for the trees and `staged` (see `tarstream`)."""
        trees = len(self.trees)
        try:
            answers = placed(output, trees + len(staged))
        except ValueError as error:  # which were placed is not known: plan them all again
            reason = f"the pod's answer was unclear: {error}"
            self.result.stale += [Stale(op, reason) for t in self._sent() for op in t.operations]
            self.result.stale += [Stale(op, reason) for op, _, _ in staged]
            return
        for tree, answer in zip(self._sent(), answers[:trees], strict=True):
            if answer is None:
                self.result.placed_trees.append(tree)
            else:
                reason = _refusal(tree.top.path, answer)
                self.result.stale += [Stale(op, reason) for op in tree.operations]
        for (op, temporary, entry), answer in zip(staged, answers[trees:], strict=True):
            if answer is None:
                self.result.placed.append((op, temporary, entry))
            else:
                self.result.stale.append(Stale(op, _refusal(op.path, answer)))


def _refusal(path: str, answer: str) -> str:
    """Why the placing script did not put `path` in place, from its answer."""
    if answer == "P":
        return f"a parent of {path!r} is not a directory in the pod"
    if answer == "X":
        return f"{path!r} changed since the plan: it appeared in the pod"
    return f"the pod refused to put it in place: {answer[1:]}"


def _raw(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


class Changed(Exception):
    """The local file is not the one the plan saw."""


@contextlib.contextmanager
def source(root: Path, op: Upload) -> Iterator[BinaryIO]:
    """The local file `op` uploads, checked against the plan before and after it is read.

    Raises OSError if it cannot be read, Changed if it is not (or no longer) the planned file.
    """
    full = os.path.join(root, *op.path.split("/"))
    with os.fdopen(os.open(full, _FLAGS), "rb") as file:
        _check_info(os.fstat(file.fileno()), op)
        yield file
        _check_info(os.fstat(file.fileno()), op)  # not written to while it was read


def read_small(root: Path, op: Upload) -> bytes:
    """The whole of the (small) local file `op` uploads, checked against the plan once read.

    `source` without its file object, its context manager and its first check: they cost more
    than reading a small file does, and an initial sync reads tens of thousands. One look
    after reading suffices here: it sees any change made before or while the file was read,
    and reading more than the planned size is bounded (one byte). Raises OSError, Changed.
    """
    descriptor = os.open(os.path.join(root, *op.path.split("/")), _FLAGS)
    try:
        data = os.read(descriptor, op.source.size + 1)  # one byte more shows a file that grew
        while len(data) < op.source.size and (more := os.read(descriptor, op.source.size)):
            data += more  # a short read (a file system that returns less at a time)
        _check_info(os.fstat(descriptor), op)
    finally:
        os.close(descriptor)
    if len(data) != op.source.size:
        raise Changed("it changed since the plan")
    return data


def _check_info(info: os.stat_result, op: Upload) -> None:
    if (info.st_size, info.st_mtime_ns) != (op.source.size, op.source.mtime_ns):
        raise Changed("it changed since the plan")
