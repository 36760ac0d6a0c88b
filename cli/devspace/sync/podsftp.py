"""Writing to temporary names in the pod over SFTP, with many requests in flight.

What `podwrite` uses for files that do not go as tar streams (a few changes at a time, and
symlinks): each file is opened under a `.devspace-tmp-…` name, written in blocks of one SSH
packet each, given its mode and mtime, and closed, all pipelined; `podwrite` then renames it
into place after a fresh look at the pod.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from paramiko.sftp import int64

from devspace.sync.operations import MakeSymlink, Upload
from devspace.sync.outcome import Progress, Stale
from devspace.sync.podstream import Changed, file_mode, remote_entry, source
from devspace.sync.remote import (
    CMD_CLOSE,
    CMD_FSETSTAT,
    CMD_OPEN,
    CMD_REMOVE,
    CMD_SYMLINK,
    CMD_WRITE,
    OPEN_NEW,
    Pipeline,
    PodFolder,
    attributes,
)
from devspace.sync.snapshot import Entry, Kind

# SFTP data per WRITE request: what every server accepts, less room for the request header so
# that one request fits one SSH packet (OpenSSH allows 32 KiB per packet on a session).
BLOCK = 32 * 1024 - 64
OPEN_FILES = 64  # temporary files open at once in the pod

Content = Upload | MakeSymlink
Staged = tuple[Content, str, Entry]  # an operation, its temporary name, the entry it will be


@dataclass
class SftpStage:
    """Stages contents in `pod` from `local_root`, naming each by `temporary(path)` and
    recording what could not be written in `stale`."""

    pod: PodFolder
    local_root: Path
    temporary: Callable[[str], str]
    stale: list[Stale]
    progress: Progress | None = None

    def run(self, ops: Sequence[Content]) -> list[Staged]:
        """Write each operation's content to a temporary name; return what is left to place.

        Raises RemoteError, ConnectionLost.
        """
        staged: list[Staged] = []
        pipe = self.pod.pipeline()
        # A few dozen files open at a time: the server holds a descriptor per open handle.
        for start in range(0, len(ops), OPEN_FILES):
            staged += self._some(pipe, ops[start : start + OPEN_FILES])
        return staged

    def _some(self, pipe: Pipeline, ops: Sequence[Content]) -> list[Staged]:
        opened = []
        for op in ops:
            temporary = self.temporary(op.path)
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
            attrs = attributes(file_mode(bool(entry.executable)), entry.mtime_ns // 1_000_000_000)
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
            with source(self.local_root, op) as file:
                offset = 0
                while block := file.read(BLOCK):
                    checks.append((op, pipe.send(CMD_WRITE, handle, int64(offset), block)))
                    offset += len(block)
                    if self.progress:
                        self.progress(len(block))
        except (OSError, Changed) as error:
            self.stale.append(Stale(op, f"{op.path!r} could not be read: {error}"))
            return False
        return True
