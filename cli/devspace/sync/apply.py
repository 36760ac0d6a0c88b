"""Applying a `SyncPlan` to the laptop's folder and the pod's, and one whole pass (`sync_once`).

Operations run in three phases — conflict copies moved aside, deletes, then writes — each on
both sides, so an upload always finds its source where the plan's moves left it. Every
operation first checks that its path still holds what the plan expected (see `Stale`), and
that no parent on the way is a link; a file is written to a `.devspace-tmp-…` name beside its
target and renamed into place. The laptop's side is here; the pod's is `podwrite`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import secrets
import stat
import sys
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import paramiko

from devspace.sync.errors import SyncError
from devspace.sync.operations import (
    Delete,
    Download,
    MakeDir,
    MakeSymlink,
    MoveAside,
    Operation,
    SetMode,
    SyncPlan,
)
from devspace.sync.outcome import ApplyResult, Observed, Progress, Stale, matches, stale_reason
from devspace.sync.podstream import TAR_MAX_FILE
from devspace.sync.podwrite import TAR_MIN_FILES, WINDOW_BYTES, WINDOW_FILES, PodWriter
from devspace.sync.policy import TEMPORARY_PREFIX
from devspace.sync.remote import ConnectionLost, PodFolder, RemoteError, lost
from devspace.sync.snapshot import DIRECTORY, Ancestor, Entry, Kind, Side, Snapshot, is_normal_path

_WINDOWS = sys.platform == "win32"
_READ = 1 << 20


class BrakeError(SyncError):
    """The plan is held by a safety brake: it must not run until the user confirms."""


class ApplyInterrupted(SyncError):
    """The connection dropped part way; `partial` is what was applied before it did."""

    def __init__(self, message: str, partial: ApplyResult) -> None:
        """Describe the interruption and keep the partial result."""
        super().__init__(message)
        self.partial = partial


def apply(
    plan: SyncPlan,
    local_root: Path,
    pod: PodFolder,
    local: Snapshot,
    remote: Snapshot,
    *,
    progress: Progress | None = None,
    tar: bool | None = None,
    listed: Callable[[str], bool] | None = None,
) -> ApplyResult:
    """Apply `plan`, made from the snapshots `local` and `remote`, to both folders.

    Operations whose path no longer holds what the plan expected are skipped and returned in
    `ApplyResult.stale`; plan again to deal with them. `tar` forces or forbids tar streams for
    uploads (None: chosen by batch size). `listed(path)` says which paths `remote` was
    listed for moments ago: their first check before a write in the pod trusts it (deletes
    and the final check before each rename always ask the pod).

    Raises BrakeError if the plan is stopped by a brake (nothing is touched), ApplyInterrupted
    if the connection drops (carrying what was done), RemoteError if the pod fails in a way
    that is not about one file.
    """
    if plan.stopped:
        raise BrakeError("; ".join(brake.message for brake in plan.brakes))
    laptop = LocalWriter(local_root, pod, Observed(local), progress=progress)
    writer = PodWriter(pod, local_root, Observed(remote), progress=progress, tar=tar)
    if listed is not None:
        writer.listed = (remote, listed)

    def result() -> ApplyResult:
        return ApplyResult(
            done=(*laptop.done, *writer.done),
            stale=(*laptop.stale, *writer.stale),
            local=laptop.observed.snapshot(),
            remote=writer.observed.snapshot(),
        )

    local_ops = [op for op in plan.operations if op.side is Side.LOCAL]
    removals = [op for op in plan.operations if isinstance(op, MoveAside | Delete)]
    creations = [op for op in plan.operations if not isinstance(op, MoveAside | Delete)]
    try:
        # Moves and deletes on both sides first: an upload reads its source where a conflict
        # move put it, and a file replaces a directory only once the directory is empty.
        for op in local_ops:
            if isinstance(op, MoveAside | Delete):
                laptop.apply(op)
        writer.moves_and_deletes([op for op in removals if op.side is Side.REMOTE])
        small = [
            op for op in local_ops if isinstance(op, Download) and op.source.size <= TAR_MAX_FILE
        ]
        by_tar = small if (tar if tar is not None else len(small) >= TAR_MIN_FILES) else []
        batched = {id(op) for op in by_tar}
        for op in local_ops:
            if not isinstance(op, MoveAside | Delete) and id(op) not in batched:
                laptop.apply(op)  # directories before the files that go in them
        batch: list[Download] = []
        size = 0
        for op in by_tar:  # each batch is held in memory: bound it by files and bytes
            batch.append(op)
            size += op.source.size
            if len(batch) >= WINDOW_FILES or size >= WINDOW_BYTES:
                laptop.download_batch(batch)
                batch, size = [], 0
        if batch:
            laptop.download_batch(batch)
        writer.writes(
            [op for op in creations if op.side is Side.REMOTE and not isinstance(op, Download)]
        )
    except ConnectionLost as error:
        raise ApplyInterrupted(str(error), result()) from error
    return result()


def settled(ancestor: Ancestor, plan: SyncPlan, result: ApplyResult) -> Ancestor:
    """The ancestor after `result`: paths done or agreed are recorded as observed.

    Paths whose operations did not run keep their old record, so the next pass sees their
    changes again.
    """
    paths = {op.path for op in result.done}
    paths.update(op.to for op in result.done if isinstance(op, MoveAside))
    paths.update(plan.agreed)
    return ancestor.settled(paths, result.local, result.remote)


def local_entry(full: str) -> Entry | None:
    """What `full` is on the laptop now, as `scan` would describe it (None: absent)."""
    try:
        info = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(full)
        return Entry(Kind.SYMLINK, target=target.replace("\\", "/") if _WINDOWS else target)
    if stat.S_ISDIR(info.st_mode):
        reparse = getattr(info, "st_file_attributes", 0) & 0x400
        return Entry(Kind.SYMLINK) if reparse else DIRECTORY
    if stat.S_ISREG(info.st_mode):
        executable = None if _WINDOWS else bool(info.st_mode & stat.S_IXUSR)
        return Entry(Kind.FILE, info.st_size, info.st_mtime_ns, executable)
    return Entry(Kind.SYMLINK)  # a socket or device: matches nothing a plan expects


def remove_local_temporaries(root: Path, paths: Sequence[str]) -> None:
    """Remove leftover temporary files of an interrupted pass (names the scan ignored)."""
    for path in paths:
        if not path.rpartition("/")[2].startswith(TEMPORARY_PREFIX) or not is_normal_path(path):
            continue
        full = os.path.join(root, *path.split("/"))
        entry = local_entry(full)
        if entry is not None and entry.kind is not Kind.DIR:
            with contextlib.suppress(OSError):
                os.remove(full)


class LocalWriter:
    """Applies the laptop's side of a plan, recording into `observed`, `done` and `stale`."""

    def __init__(
        self, root: Path, pod: PodFolder, observed: Observed, *, progress: Progress | None
    ) -> None:
        """Write under `root`, downloading from `pod`."""
        self.root = root
        self.pod = pod
        self.observed = observed
        self.progress = progress
        self.done: list[Operation] = []
        self.stale: list[Stale] = []

    def full(self, path: str) -> str:
        """The laptop path of a snapshot path."""
        return os.path.join(self.root, *path.split("/"))

    def apply(self, op: Operation) -> None:
        """Apply one operation, or record why not. Raises ConnectionLost."""
        problem = self._problem(op)
        if problem is None:
            try:
                problem = self._apply(op)
            except OSError as error:
                problem = f"{op.path!r}: {error.strerror or error}"
        self._record(op, problem)

    def _record(self, op: Operation, problem: str | None) -> None:
        if problem is None:
            self.done.append(op)
        else:
            self.stale.append(Stale(op, problem))

    def download_batch(self, ops: Sequence[Download]) -> None:
        """Download small files through one tar stream, each checked like a single download.

        The whole batch is held in memory: keep it to small files. Raises ConnectionLost.
        """
        ready = []
        for op in ops:
            problem = self._problem(op)
            if problem is None:
                ready.append(op)
            else:
                self.stale.append(Stale(op, problem))
        if not ready:
            return
        try:
            archive = self.pod.tar_of([op.path for op in ready])
        except RemoteError as error:  # which file failed is not told: plan them all again
            self.stale.extend(Stale(op, f"the pod could not send it: {error}") for op in ready)
            return
        members: dict[str, tuple[int, int, bytes]] = {}
        with tarfile.open(fileobj=io.BytesIO(archive), errors="surrogateescape") as tar:
            for info in tar:
                data = tar.extractfile(info) if info.isfile() else None
                if data is not None and info.name.startswith("./"):
                    members[info.name[2:]] = (info.size, int(info.mtime), data.read())
        for op in ready:
            fetch = functools.partial(_from_member, members.get(op.path))
            try:
                self._record(op, self._download(op, fetch))
            except OSError as error:
                self._record(op, f"{op.path!r}: {error.strerror or error}")

    def _problem(self, op: Operation) -> str | None:
        paths = [op.path, op.to] if isinstance(op, MoveAside) else [op.path]
        for path in paths:
            if not is_normal_path(path) or "\\" in path:
                return f"{path!r} is not a path inside the sync root"
            up = path.rpartition("/")[0]
            while up:
                if local_entry(self.full(up)) != DIRECTORY:
                    return f"a parent of {path!r} is not a directory on the laptop"
                up = up.rpartition("/")[0]
        expected = op.entry if isinstance(op, Delete | SetMode | MoveAside) else op.replaces
        found = local_entry(self.full(op.path))
        if not matches(found, expected):
            return stale_reason(op.path, found, expected)
        if isinstance(op, MoveAside) and local_entry(self.full(op.to)) is not None:
            return f"{op.to!r} exists on the laptop"
        return None

    def _apply(self, op: Operation) -> str | None:
        full = self.full(op.path)
        if isinstance(op, MoveAside):
            _rename_new(full, self.full(op.to))
            self.observed.move(op.path, op.to)
        elif isinstance(op, Delete):
            (os.rmdir if op.entry.kind is Kind.DIR else os.remove)(full)
            self.observed.set(op.path, None)
        elif isinstance(op, MakeDir):
            if op.replaces is not None:
                os.remove(full)
            os.mkdir(full)
            self.observed.set(op.path, DIRECTORY)
        elif isinstance(op, SetMode):
            mode = stat.S_IMODE(os.lstat(full).st_mode)
            readable = (mode & 0o444) >> 2
            os.chmod(full, mode | readable if op.executable else mode & ~0o111)
            self.observed.set(op.path, local_entry(full))
        elif isinstance(op, MakeSymlink):
            temporary = self._temporary(op.path)
            os.symlink(op.target, temporary)
            try:
                return self._place(op, temporary)
            finally:
                if os.path.lexists(temporary):
                    os.remove(temporary)
        elif isinstance(op, Download):
            return self._download(op, self._fetch)
        else:  # pragma: no cover - uploads run in the pod's writer
            raise TypeError(op)
        return None

    def _temporary(self, path: str) -> str:
        return self.full(path.rpartition("/")[0] + f"/{TEMPORARY_PREFIX}{secrets.token_hex(8)}")

    def _download(
        self, op: Download, fetch: Callable[[Download, BinaryIO], str | None]
    ) -> str | None:
        temporary = self._temporary(op.path)
        executable = bool(op.source.executable)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        descriptor = os.open(temporary, flags, 0o777 if executable else 0o666)
        try:
            with os.fdopen(descriptor, "wb") as target:
                problem = fetch(op, target)
            if problem is None:
                os.utime(temporary, ns=(op.source.mtime_ns, op.source.mtime_ns))
                return self._place(op, temporary)
            return problem
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)

    def _fetch(self, op: Download, target: BinaryIO) -> str | None:
        """Copy the pod's file into `target`; a reason if it is not the file planned."""
        whole_seconds = op.source.mtime_ns // 1_000_000_000
        expected = (op.source.size, whole_seconds)
        try:
            with self.pod.sftp.open(self.pod.path(op.path), "rb") as source:
                before = source.stat()
                if (before.st_size, before.st_mtime) != expected:
                    return f"{op.path!r} changed in the pod since the plan"
                source.prefetch(op.source.size, max_concurrent_requests=64)
                while block := source.read(_READ):
                    target.write(block)
                    if self.progress:
                        self.progress(len(block))
                after = source.stat()
        except (paramiko.SSHException, EOFError) as error:
            raise lost(error) from error
        except OSError as error:
            if not self.pod.transport.is_active():  # a socket error, not the file's
                raise lost(error) from error
            return f"{op.path!r} could not be read in the pod: {error.strerror or error}"
        if (after.st_size, after.st_mtime) != expected:
            return f"{op.path!r} changed in the pod while it was copied"
        return None

    def _place(self, op: Download | MakeSymlink, temporary: str) -> str | None:
        """Rename `temporary` to `op.path` if that still holds what the plan expected."""
        entry = local_entry(temporary)
        full = self.full(op.path)
        found = local_entry(full)
        if not matches(found, op.replaces):
            return stale_reason(op.path, found, op.replaces)
        if op.replaces is None:
            _rename_new(temporary, full)
        elif op.replaces.kind is Kind.DIR:
            os.rmdir(full)  # emptied by this pass's deletes
            _rename_new(temporary, full)
        else:
            os.replace(temporary, full)
        self.observed.set(op.path, entry)
        return None


def _from_member(
    member: tuple[int, int, bytes] | None, op: Download, target: BinaryIO
) -> str | None:
    """Write a tar member (size, whole-second mtime, bytes) to `target` if it is `op`'s file."""
    if member is None:
        return f"the pod did not send {op.path!r}"
    if member[:2] != (op.source.size, op.source.mtime_ns // 1_000_000_000):
        return f"{op.path!r} changed in the pod since the plan"
    target.write(member[2])
    return None


def _rename_new(source: str, target: str) -> None:
    """Rename `source` to `target`, failing rather than replacing something there.

    Raises FileExistsError if `target` exists, OSError for other failures.
    """
    if os.path.isdir(source) and not os.path.islink(source):
        if os.path.lexists(target):
            raise FileExistsError(target)
        os.rename(source, target)
        return
    try:
        # A hard link refuses an existing target atomically, where rename would replace it.
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except (OSError, NotImplementedError):  # no hard links here (FAT, some shares)
        if os.path.lexists(target):
            raise FileExistsError(target) from None
        os.rename(source, target)
        return
    os.remove(source)
