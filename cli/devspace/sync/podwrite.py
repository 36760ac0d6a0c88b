"""Applying a plan's operations in the pod: checked first, written to temporary names, renamed.

Each batch of operations is checked against one fresh look at the pod (`PodFolder.entries`,
nanosecond mtimes, every parent directory included), so nothing is overwritten or deleted
that changed since the plan, and nothing is written through a parent that became a link.
File contents go to `.devspace-tmp-…` names beside their targets — over SFTP with many
requests in flight (`podsftp`), or as tar streams (`podstream`) for a batch of small files and
for every large file, a new folder's files under the folder's own temporary name (`newtrees`)
— and are checked again right before they are renamed into place: an app in the pod never
reads half a file, and a dropped connection leaves only temporary names, which the next pass
removes (a large file's stream, or a new folder's, removes its own once its input ends).

SFTP (version 3) sets whole-second mtimes, and a tar header carries whole seconds too, so the
pod's copy of a file gets the laptop's mtime rounded down. That is what the pod's entry
records after a write: exactly what its listing will show.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from devspace.sync.newtrees import NewTree, new_trees
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
from devspace.sync.podsftp import Content, SftpStage, Staged
from devspace.sync.podstream import (
    TAR_MAX_FILE,
    TarUpload,
    file_mode,
    remote_entry,
    remove_temporaries,
    share_of,
    shares,
)
from devspace.sync.policy import TEMPORARY_PREFIX
from devspace.sync.remote import (
    CMD_EXTENDED,
    CMD_MKDIR,
    CMD_REMOVE,
    CMD_RENAME,
    CMD_RMDIR,
    CMD_SETSTAT,
    POSIX_RENAME,
    PodFolder,
    attributes,
    through_links,
)
from devspace.sync.snapshot import (
    DIRECTORY,
    Entry,
    Kind,
    Snapshot,
    ancestors,
    is_normal_path,
    parent,
)

# A batch of at least this many small files goes as one tar stream rather than over SFTP
# (see the measurements in the sync tests' module docstring).
TAR_MIN_FILES = 64
# A file at least this big goes as its own tar stream rather than over SFTP, even alone: the
# stream needs no answer per 32 KiB (see the large-file row in BENCHMARKS.md).
STREAM_MIN_FILE = 8 << 20
STREAMS = 3  # tar streams at once (see `_streams`)
WINDOW_FILES = 1000  # operations checked and renamed together
WINDOW_BYTES = 64 << 20
# A window whose small files go as tar streams may be this big: the streams' own command puts
# new files in place (no rename each), the archive is read as it is sent (bounded memory), and
# each window costs a pause with the pod idle (a check, the directories, new streams and
# their tails). 10,000 new files in windows of 1,000 took about 0.15 s more than in one on a
# quiet machine, and up to twice as long when creating files in the pod was slow (issue 7).
TAR_WINDOW_FILES = 20_000
_Op = TypeVar("_Op", bound=Operation)


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
                fresh[op.path] = op.source  # a file: what the checks of later ones look at
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
            if len(window) >= TAR_WINDOW_FILES or size >= WINDOW_BYTES:
                self._windows(window)
                window, size = [], 0
        if window:
            self._windows(window)

    def _windows(self, ops: Sequence[MakeDir | MakeSymlink | SetMode | Upload]) -> None:
        """`ops` as one window if its small files go as tar streams, else `WINDOW_FILES` each."""
        small = sum(isinstance(op, Upload) and op.source.size <= TAR_MAX_FILE for op in ops)
        streamed = self.tar if self.tar is not None else small >= TAR_MIN_FILES
        step = max(1, len(ops) if streamed else WINDOW_FILES)
        for start in range(0, len(ops), step):
            self._window(ops[start : start + step])

    def _window(self, ops: Sequence[MakeDir | MakeSymlink | SetMode | Upload]) -> None:
        accepted = self._accept(ops)
        small = sum(isinstance(op, Upload) and op.source.size <= TAR_MAX_FILE for op in accepted)
        use_tar = self.tar if self.tar is not None else small >= TAR_MIN_FILES
        share = share_of(small, STREAMS, TAR_MIN_FILES)  # a tree is sent by one stream
        trees = new_trees(accepted, small=TAR_MAX_FILE, most=share) if use_tar else []
        whole = {id(op) for tree in trees for op in tree.operations}
        rest = [op for op in accepted if id(op) not in whole]
        self._directories_and_modes([op for op in rest if isinstance(op, MakeDir | SetMode)])
        contents = [op for op in rest if isinstance(op, Upload | MakeSymlink)]
        if contents or trees:
            self._place(self._stage(contents, trees, use_tar))

    def _directories_and_modes(self, ops: Sequence[MakeDir | SetMode]) -> None:
        pipe = self.pod.pipeline()
        sent: list[tuple[MakeDir | SetMode, int]] = []
        for op in ops:
            path = self.pod.path(op.path)
            if isinstance(op, SetMode):
                sent.append(
                    (op, pipe.send(CMD_SETSTAT, path, attributes(file_mode(op.executable))))
                )
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

    def _stage(
        self, ops: Sequence[Content], trees: Sequence[NewTree], use_tar: bool
    ) -> list[Staged]:
        """Write each operation's content to a temporary name; return what is left to place.

        `trees` (new folders sent whole) and files streamed by tar that replace nothing are
        put in place by the stream's own command and recorded here, not returned.
        """
        uploads = [op for op in ops if isinstance(op, Upload)]
        by_tar = [op for op in uploads if op.source.size <= TAR_MAX_FILE] if use_tar else []
        if self.tar is not False:
            by_tar += [op for op in uploads if op.source.size >= STREAM_MIN_FILE]
        sftp = SftpStage(self.pod, self.local_root, self._temporary, self.stale, self.progress)
        if not by_tar and not trees:
            return sftp.run(ops)
        streamed = {id(op) for op in by_tar}
        staged = self._streams(by_tar, trees)
        return staged + sftp.run([op for op in ops if id(op) not in streamed])

    def _streams(self, ops: Sequence[Upload], trees: Sequence[NewTree]) -> list[Staged]:
        """Send `ops` and `trees` as up to `STREAMS` tar streams at once; return the files left
        to place.

        Creating files is most of the pod's work (each new inode costs far more than its
        bytes), and building the archives the laptop's: several streams keep both busy at
        once. On two cores, 10,000 new files took 0.48 s in two streams and 0.42 s in three
        (medians of eight rounds, rsync 0.59 s; a fourth stream was slower).
        A tree goes whole in one stream; `new_trees` keeps each within a stream's share.
        """
        streams = [
            TarUpload(
                self.pod,
                self.local_root,
                [(op, self._temporary(op.path)) for op in files],
                self._temporary("list"),
                self.progress,
                [replace(tree, temporary=self._temporary(tree.top.path)) for tree in folders],
            )
            for files, folders in shares(ops, trees, STREAMS, TAR_MIN_FILES)
        ]
        with ThreadPoolExecutor(len(streams), thread_name_prefix="sync-stream") as pool:
            futures = [pool.submit(stream.run) for stream in streams]
        left: list[Staged] = []
        unplaced: list[NewTree] = []
        leftovers: list[str] = []
        errors = [error for f in futures if (error := f.exception()) is not None]
        for future in futures:
            if future.exception() is None:  # what a finished stream placed is recorded even if
                result = future.result()  # another one lost the connection
                for op, _, entry in result.placed:
                    self.observed.set(op.path, entry)
                    self.done.append(op)
                for tree in result.placed_trees:
                    self._record_tree(tree)
                self.stale += result.stale
                left += result.staged
                unplaced += result.staged_trees
                leftovers += result.leftovers
        if errors:
            raise errors[0]
        if leftovers:
            remove_temporaries(self.pod, leftovers)
        if unplaced:
            self._place_trees(unplaced)
        return left

    def _record_tree(self, tree: NewTree) -> None:
        for op in tree.operations:
            self.observed.set(op.path, DIRECTORY if isinstance(op, MakeDir) else remote_entry(op))
            self.done.append(op)

    def _place_trees(self, trees: Sequence[NewTree]) -> None:
        """Rename new folders into place over SFTP (the pod has no Perl to do it).

        OpenSSH's server renames a folder only if nothing is at the target (it looks first).
        """
        fresh = self.pod.entries({t.top.path for t in trees} | ancestors(t.top.path for t in trees))
        pipe = self.pod.pipeline()
        sent = []
        leftovers = []
        for tree in trees:
            path = tree.top.path
            if through_links(path, fresh) or fresh.get(path) is not None:
                reason = stale_reason(path, fresh.get(path), None)
                self.stale += [Stale(op, reason) for op in tree.operations]
                leftovers.append(tree.temporary)
                continue
            source, target = self.pod.path(tree.temporary), self.pod.path(path)
            sent.append((tree, pipe.send(CMD_RENAME, source, target)))
        for tree, number in sent:
            reply = pipe.wait(number)
            if reply.ok:
                self._record_tree(tree)
            else:
                reason = f"the pod refused to put it in place: {reply.text}"
                self.stale += [Stale(op, reason) for op in tree.operations]
                leftovers.append(tree.temporary)
        if leftovers:
            remove_temporaries(self.pod, leftovers)

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
