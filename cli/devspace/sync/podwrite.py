"""Applying a plan's operations in the pod: checked first, written to temporary names, renamed.

Each batch of operations is checked against one fresh look at the pod (`PodFolder.entries`,
nanosecond mtimes, every parent directory included), so nothing is overwritten or deleted
that changed since the plan, and nothing is written through a parent that became a link.
File contents go to `.devspace-tmp-…` names beside their targets — over SFTP with many
requests in flight, or as one tar stream for a batch of small files — and are checked again
right before they are renamed into place: an app in the pod never reads half a file, and a
dropped connection leaves only temporary names, which the next pass removes.

SFTP (version 3) sets whole-second mtimes, and a tar header carries whole seconds too, so the
pod's copy of a file gets the laptop's mtime rounded down. That is what the pod's entry
records after a write: exactly what its listing will show.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

from paramiko.sftp import int64

from devspace.sync.operations import (
    Delete,
    MakeDir,
    MakeSymlink,
    MoveAside,
    Operation,
    SetMode,
    Upload,
)
from devspace.sync.outcome import Observed, Progress, Stale, matches, stale_reason
from devspace.sync.policy import TEMPORARY_PREFIX
from devspace.sync.remote import (
    CMD_CLOSE,
    CMD_EXTENDED,
    CMD_FSETSTAT,
    CMD_MKDIR,
    CMD_OPEN,
    CMD_REMOVE,
    CMD_RENAME,
    CMD_RMDIR,
    CMD_SETSTAT,
    CMD_SYMLINK,
    CMD_WRITE,
    OPEN_NEW,
    POSIX_RENAME,
    Pipeline,
    PodFolder,
    RemoteError,
    TarChunks,
    ancestors,
    attributes,
    through_links,
)
from devspace.sync.snapshot import DIRECTORY, Entry, Kind, Snapshot, is_normal_path, parent

# SFTP data per WRITE request: what every server accepts, less room for the request header so
# that one request fits one SSH packet (OpenSSH allows 32 KiB per packet on a session).
BLOCK = 32 * 1024 - 64
# A batch of at least this many small files goes as one tar stream rather than over SFTP
# (see the measurements in the sync tests' module docstring).
TAR_MIN_FILES = 64
TAR_MAX_FILE = 1 << 20  # bigger files stream over SFTP with bounded memory
WINDOW_FILES = 1000  # operations checked and renamed together
WINDOW_BYTES = 64 << 20
OPEN_FILES = 64  # temporary files open at once in the pod

Content = Upload | MakeSymlink
Staged = tuple[Content, str, Entry]  # an operation, its temporary name, the entry it will be
_Op = TypeVar("_Op", bound=Operation)


def remote_entry(op: Upload) -> Entry:
    """What the pod's listing shows for `op`'s file once written: mtime in whole seconds."""
    seconds = op.source.mtime_ns // 1_000_000_000
    return op.source._replace(mtime_ns=seconds * 1_000_000_000, executable=_executable(op))


def _executable(op: Upload) -> bool:
    if op.source.executable is not None:
        return op.source.executable
    # The laptop cannot tell (Windows): keep what the pod had, or a plain file.
    return bool(op.replaces and op.replaces.kind is Kind.FILE and op.replaces.executable)


def _mode(executable: bool) -> int:
    return 0o755 if executable else 0o644


def remove_temporaries(pod: PodFolder, paths: Sequence[str]) -> None:
    """Remove leftover temporary files in the pod (a pass cut short). Raises ConnectionLost."""
    pipe = pod.pipeline()
    for path in paths:
        if path.rpartition("/")[2].startswith(TEMPORARY_PREFIX) and is_normal_path(path):
            pipe.send(CMD_REMOVE, pod.path(path))
    pipe.drain()  # a directory of that name stays: sync never makes one


class PodWriter:
    """Applies the pod's side of a plan, recording into `observed`, `done` and `stale`."""

    def __init__(
        self,
        pod: PodFolder,
        local_root: Path,
        observed: Observed,
        *,
        progress: Progress | None = None,
        tar: bool | None = None,
    ) -> None:
        """Write into `pod`, reading uploads from `local_root`.

        `tar` forces (True) or forbids (False) tar streams; None chooses by batch size.
        """
        self.pod = pod
        self.local_root = local_root
        self.observed = observed
        self.progress = progress
        self.tar = tar
        # A listing taken moments ago (a scoped pass's) answers the first check before
        # writing, instead of asking the pod again; `_place` always asks afresh.
        self.listed: tuple[Snapshot, Callable[[str], bool]] | None = None
        self.done: list[Operation] = []
        self.stale: list[Stale] = []
        self._token = secrets.token_hex(6)
        self._count = 0

    # --- checking ---------------------------------------------------------------------------

    def _accept(self, ops: Sequence[_Op]) -> list[_Op]:
        """The operations whose paths the pod still holds as planned, in order.

        Raises RemoteError, ConnectionLost.
        """
        paths = {op.path for op in ops} | {op.to for op in ops if isinstance(op, MoveAside)}
        wanted = paths | ancestors(paths)
        listed, self.listed = self.listed, None  # good for the first check only
        if listed is not None and all(listed[1](p) for p in wanted):
            fresh: dict[str, Entry | None] = {p: listed[0].get(p) for p in wanted}
        else:
            fresh = self.pod.entries(wanted)
        accepted = []
        for op in ops:
            problem = self._problem(op, fresh)
            if problem:
                self.stale.append(Stale(op, problem))
                continue
            accepted.append(op)
            # Later operations in the batch see this one's effect (a new parent directory).
            if isinstance(op, MoveAside):
                fresh[op.to], fresh[op.path] = fresh.get(op.path), None
            elif isinstance(op, Delete):
                fresh[op.path] = None
            elif isinstance(op, MakeDir):
                fresh[op.path] = DIRECTORY
            elif isinstance(op, Upload):
                fresh[op.path] = remote_entry(op)
        return accepted

    def _problem(self, op: Operation, fresh: dict[str, Entry | None]) -> str | None:
        targets = [op.path, op.to] if isinstance(op, MoveAside) else [op.path]
        for path in targets:
            if not is_normal_path(path) or "\\" in path:
                return f"{path!r} is not a path inside the sync root"
            if through_links(path, fresh):
                return f"a parent of {path!r} is not a directory in the pod"
        if isinstance(op, MoveAside) and fresh.get(op.to) is not None:
            return f"{op.to!r} exists in the pod"
        expected = op.entry if isinstance(op, Delete | SetMode | MoveAside) else op.replaces
        found = fresh.get(op.path)
        return None if matches(found, expected) else stale_reason(op.path, found, expected)

    # --- moves and deletes ------------------------------------------------------------------

    def moves_and_deletes(self, ops: Sequence[MoveAside | Delete]) -> None:
        """Apply conflict moves and deletes, in order. Raises RemoteError, ConnectionLost."""
        if not ops:
            return
        self.listed = None  # a delete is checked against the pod itself, never a listing
        pipe = self.pod.pipeline()
        sent = []
        for op in self._accept(ops):
            if isinstance(op, MoveAside):
                # Plain SFTP rename: OpenSSH's server refuses to replace an existing target.
                number = pipe.send(CMD_RENAME, self.pod.path(op.path), self.pod.path(op.to))
            else:
                command = CMD_RMDIR if op.entry.kind is Kind.DIR else CMD_REMOVE
                number = pipe.send(command, self.pod.path(op.path))
            sent.append((op, number))
        for op, number in sent:
            reply = pipe.wait(number)
            if not reply.ok:
                self.stale.append(Stale(op, f"the pod refused: {reply.text}"))
            elif isinstance(op, MoveAside):
                self.observed.move(op.path, op.to)
                self.done.append(op)
            else:
                self.observed.set(op.path, None)
                self.done.append(op)

    # --- writes -----------------------------------------------------------------------------

    def writes(self, ops: Sequence[MakeDir | MakeSymlink | SetMode | Upload]) -> None:
        """Apply creations and replacements, parents first. Raises RemoteError, ConnectionLost."""
        window: list[MakeDir | MakeSymlink | SetMode | Upload] = []
        size = 0
        for op in ops:
            window.append(op)
            size += op.source.size if isinstance(op, Upload) else 0
            if len(window) >= WINDOW_FILES or size >= WINDOW_BYTES:
                self._window(window)
                window, size = [], 0
        if window:
            self._window(window)

    def _window(self, ops: Sequence[MakeDir | MakeSymlink | SetMode | Upload]) -> None:
        accepted = self._accept(ops)
        self._directories_and_modes([op for op in accepted if isinstance(op, MakeDir | SetMode)])
        contents = [op for op in accepted if isinstance(op, Upload | MakeSymlink)]
        if contents:
            self._place(self._stage(contents))

    def _directories_and_modes(self, ops: Sequence[MakeDir | SetMode]) -> None:
        pipe = self.pod.pipeline()
        sent: list[tuple[MakeDir | SetMode, int]] = []
        for op in ops:
            path = self.pod.path(op.path)
            if isinstance(op, SetMode):
                sent.append((op, pipe.send(CMD_SETSTAT, path, attributes(_mode(op.executable)))))
                continue
            if op.replaces is not None:
                pipe.send(CMD_REMOVE, path)  # its failure shows in the mkdir's answer
            sent.append((op, pipe.send(CMD_MKDIR, path, attributes(0o755))))
        for op, number in sent:
            reply = pipe.wait(number)
            if not reply.ok:
                self.stale.append(Stale(op, f"the pod refused: {reply.text}"))
                continue
            if isinstance(op, SetMode):
                self.observed.set(op.path, op.entry._replace(executable=op.executable))
            else:
                self.observed.set(op.path, DIRECTORY)
            self.done.append(op)

    def _temporary(self, path: str) -> str:
        self._count += 1
        up = parent(path)
        name = f"{TEMPORARY_PREFIX}{self._token}-{self._count}"
        return f"{up}/{name}" if up else name

    def _stage(self, ops: Sequence[Content]) -> list[Staged]:
        """Write each operation's content to a temporary name; return what was written."""
        small = [op for op in ops if isinstance(op, Upload) and op.source.size <= TAR_MAX_FILE]
        if not (self.tar if self.tar is not None else len(small) >= TAR_MIN_FILES):
            return self._sftp(ops)
        by_tar = {id(op) for op in small}
        return self._tar(small) + self._sftp([op for op in ops if id(op) not in by_tar])

    def _sftp(self, ops: Sequence[Content]) -> list[Staged]:
        staged: list[Staged] = []
        pipe = self.pod.pipeline()
        # A few dozen files open at a time: the server holds a descriptor per open handle.
        for start in range(0, len(ops), OPEN_FILES):
            staged += self._sftp_some(pipe, ops[start : start + OPEN_FILES])
        return staged

    def _sftp_some(self, pipe: Pipeline, ops: Sequence[Content]) -> list[Staged]:
        opened = []
        for op in ops:
            temporary = self._temporary(op.path)
            if isinstance(op, MakeSymlink):
                number = pipe.send(CMD_SYMLINK, op.target.encode(), self.pod.path(temporary))
            else:
                number = pipe.send(CMD_OPEN, self.pod.path(temporary), OPEN_NEW, attributes())
            opened.append((op, temporary, number))
        staged: list[Staged] = []
        checks: list[tuple[Content, int]] = []
        for op, temporary, number in opened:
            reply = pipe.wait(number)
            if not reply.ok:
                self.stale.append(Stale(op, f"the pod refused a temporary file: {reply.text}"))
                continue
            if isinstance(op, MakeSymlink):
                staged.append((op, temporary, Entry(Kind.SYMLINK, target=op.target)))
                continue
            entry = remote_entry(op)
            written = self._stream(pipe, op, reply.handle, checks)
            attrs = attributes(_mode(bool(entry.executable)), entry.mtime_ns // 1_000_000_000)
            checks.append((op, pipe.send(CMD_FSETSTAT, reply.handle, attrs)))
            checks.append((op, pipe.send(CMD_CLOSE, reply.handle)))
            if written:
                staged.append((op, temporary, entry))
            else:
                pipe.send(CMD_REMOVE, self.pod.path(temporary))
        failed = {id(op) for op, number in checks if not pipe.wait(number).ok}
        for op, temporary, _ in staged:
            if id(op) in failed:
                self.stale.append(Stale(op, "the pod refused to write a temporary file"))
                pipe.send(CMD_REMOVE, self.pod.path(temporary))
        pipe.drain()
        return [s for s in staged if id(s[0]) not in failed]

    def _stream(
        self, pipe: Pipeline, op: Upload, handle: bytes, checks: list[tuple[Content, int]]
    ) -> bool:
        """Send the local file's bytes as WRITE requests; False if it changed meanwhile."""
        try:
            with _source(self.local_root, op) as source:
                offset = 0
                while block := source.read(BLOCK):
                    checks.append((op, pipe.send(CMD_WRITE, handle, int64(offset), block)))
                    offset += len(block)
                    if self.progress:
                        self.progress(len(block))
        except (OSError, _Changed) as error:
            self.stale.append(Stale(op, f"{op.path!r} could not be read: {error}"))
            return False
        return True

    def _tar(self, ops: Sequence[Upload]) -> list[Staged]:
        staged: list[Staged] = []

        def archive() -> Iterator[bytes]:
            chunks = TarChunks()
            with tarfile.open(
                fileobj=chunks, mode="w|", format=tarfile.GNU_FORMAT, errors="surrogateescape"
            ) as tar:
                for op in ops:
                    try:
                        with _source(self.local_root, op) as source:
                            data = source.read()
                    except (OSError, _Changed) as error:
                        self.stale.append(Stale(op, f"{op.path!r} could not be read: {error}"))
                        continue
                    entry = remote_entry(op)
                    temporary = self._temporary(op.path)
                    info = tarfile.TarInfo(temporary)
                    info.size, info.mode = len(data), _mode(bool(entry.executable))
                    info.mtime = entry.mtime_ns // 1_000_000_000
                    tar.addfile(info, io.BytesIO(data))
                    staged.append((op, temporary, entry))
                    if self.progress:
                        self.progress(len(data))
                    yield from chunks.take()
            yield from chunks.take(last=True)

        try:
            self.pod.stream_tar(archive())
        except RemoteError as error:
            remove_temporaries(self.pod, [temporary for _, temporary, _ in staged])
            self.stale.extend(Stale(op, str(error)) for op, _, _ in staged)
            return []
        return staged

    def _place(self, staged: Sequence[Staged]) -> None:
        """Check each target once more, then rename the temporary files into place."""
        if not staged:
            return
        fresh = self.pod.entries(
            {op.path for op, _, _ in staged} | ancestors(op.path for op, _, _ in staged)
        )
        pipe = self.pod.pipeline()
        sent = []
        for op, temporary, entry in staged:
            found = fresh.get(op.path)
            if through_links(op.path, fresh) or not matches(found, op.replaces):
                reason = stale_reason(op.path, found, op.replaces)
                self.stale.append(Stale(op, reason))
                pipe.send(CMD_REMOVE, self.pod.path(temporary))
                continue
            source, target = self.pod.path(temporary), self.pod.path(op.path)
            if op.replaces is None:
                number = pipe.send(CMD_RENAME, source, target)  # refuses to replace
            elif op.replaces.kind is Kind.DIR:
                pipe.send(CMD_RMDIR, target)  # emptied by earlier deletes
                number = pipe.send(CMD_RENAME, source, target)
            else:
                number = pipe.send(CMD_EXTENDED, POSIX_RENAME, source, target)
            sent.append((op, temporary, entry, number))
        for op, temporary, entry, number in sent:
            reply = pipe.wait(number)
            if reply.ok:
                self.observed.set(op.path, entry)
                self.done.append(op)
            else:
                self.stale.append(Stale(op, f"the pod refused to put it in place: {reply.text}"))
                pipe.send(CMD_REMOVE, self.pod.path(temporary))
        pipe.drain()


class _Changed(Exception):
    """The local file is not the one the plan saw."""


@contextlib.contextmanager
def _source(root: Path, op: Upload) -> Iterator[BinaryIO]:
    """The local file `op` uploads, checked against the plan before and after it is read.

    Raises OSError if it cannot be read, _Changed if it is not (or no longer) the planned file.
    """
    full = os.path.join(root, *op.path.split("/"))
    # Never follow a link that replaced the file since the scan.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(full, flags), "rb") as file:
        _check_source(file, op)
        yield file
        _check_source(file, op)  # not written to while it was read


def _check_source(file: BinaryIO, op: Upload) -> None:
    info = os.fstat(file.fileno())
    if (info.st_size, info.st_mtime_ns) != (op.source.size, op.source.mtime_ns):
        raise _Changed("it changed since the plan")
