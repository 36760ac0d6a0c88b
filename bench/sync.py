"""Sync against rsync and OpenSSH sftp: the initial upload of many small files, and one large file.

Both sides start from nothing each run: a new empty folder in the pod, a new ancestor store, a
new SSH connection (its set-up is part of the time, as it is for `rsync` and `sftp`). The pod
folder is on the pod's /workspace volume, as a developer's would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bed import Sidecar
from bench.report import Row, Samples, now
from devspace.sync.once import sync_once
from devspace.sync.remote import PodFolder
from devspace.sync.state import AncestorStore, FolderKey

# The same cipher on both sides (the one devspace negotiates with Debian's sshd), so a ratio
# compares implementations, not cipher choices; it is also OpenSSH's fastest here.
CIPHER = "aes128-gcm@openssh.com"


def make_small_files(root: Path, count: int) -> None:
    """`count` files of 15 B to 1 KiB over 100 directories, like a source tree."""
    for n in range(count):
        path = root / f"pkg{n % 100}" / f"mod{n}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# module {n}\n" * (1 + n % 64))


def sync_upload(sidecar: Sidecar, local: Path, remote: str, state: Path) -> float:
    """Seconds for one `sync --once` pass of `local` into the empty pod folder `remote`."""
    started = time.perf_counter()
    with (
        sidecar.connection() as connection,
        AncestorStore.for_folder(FolderKey("bench", str(local), remote), state) as store,
    ):
        report = sync_once(local, PodFolder(connection.sftp(), remote), store)
    seconds = time.perf_counter() - started
    if not report.settled:
        raise RuntimeError(f"the sync pass did not settle: {report.plan}")
    return seconds


def rsync_upload(sidecar: Sidecar, local: Path, remote: str) -> float:
    """Seconds for `rsync -a -e ssh` of `local` into the pod folder `remote`."""
    shell = " ".join(["ssh", *sidecar.ssh_options(), "-c", CIPHER, "-p", "2222"])
    argv = ["rsync", "-a", "-e", shell, f"{local}/", f"dev@{sidecar.ip}:{remote}/"]
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - started


def sftp_put(sidecar: Sidecar, file: Path, remote: str) -> float:
    """Seconds for OpenSSH `sftp` to put `file` into the pod folder `remote`."""
    batch = file.parent.parent / "sftp-batch"
    batch.write_text(f"put {file} {remote}/{file.name}\n")
    argv = ["sftp", *sidecar.ssh_options(), "-c", CIPHER, "-b", str(batch), "-P", "2222"]
    started = time.perf_counter()
    subprocess.run([*argv, f"dev@{sidecar.ip}"], check=True, capture_output=True, timeout=600)
    return time.perf_counter() - started


def _check_count(sidecar: Sidecar, remote: str, expected: int) -> None:
    argv = ["ssh", *sidecar.ssh_options(), "-p", "2222", f"dev@{sidecar.ip}"]
    found = subprocess.run(
        [*argv, f"find {remote} -type f | wc -l"], check=True, capture_output=True, text=True
    ).stdout.strip()
    if int(found) != expected:
        raise RuntimeError(f"{remote} holds {found} files after the upload, not {expected}")


def small_files(sidecar: Sidecar, work: Path, runs: int, count: int) -> Row:
    """Initial upload of `count` small files: `sync --once` against `rsync -a -e ssh`."""
    local = work / "small" / "tree"
    make_small_files(local, count)
    ours: list[float] = []
    peer: list[float] = []
    for run in range(runs):
        # Alternate who goes first, so neither always meets a warmer (or busier) machine.
        for side in ("ours", "peer") if run % 2 == 0 else ("peer", "ours"):
            remote = f"/workspace/bench-small-{side}-{run}"
            sidecar.run(f"rm -rf {remote} && mkdir {remote} && sync")
            if side == "ours":
                state = Path(tempfile.mkdtemp(dir=work))
                ours.append(sync_upload(sidecar, local, remote, state))
            else:
                peer.append(rsync_upload(sidecar, local, remote))
            _check_count(sidecar, remote, count)
            sidecar.run(f"rm -rf {remote}")
            figure = (ours if side == "ours" else peer)[-1]
            print(f"  small files, run {run + 1}, {side}: {figure:.2f} s", file=sys.stderr)
    return Row(
        "small-files",
        f"initial upload of {count:,} small files (s)",
        Samples(tuple(ours), "s"),
        "rsync -a -e ssh",
        Samples(tuple(peer), "s"),
        goal=1.0,
        higher_is_better=False,
        when=now(),
    )


def large_file(sidecar: Sidecar, work: Path, runs: int, mebibytes: int) -> Row:
    """Upload of one `mebibytes` MiB file: `sync --once` against OpenSSH `sftp` put (MiB/s)."""
    local = work / "large" / "tree"
    local.mkdir(parents=True)
    block = os.urandom(1 << 20)
    with (local / "large.bin").open("wb") as out:
        for _ in range(mebibytes):
            out.write(block)
    ours: list[float] = []
    peer: list[float] = []
    for run in range(runs):
        for side in ("ours", "peer") if run % 2 == 0 else ("peer", "ours"):
            remote = f"/workspace/bench-large-{side}-{run}"
            sidecar.run(f"rm -rf {remote} && mkdir {remote} && sync")
            if side == "ours":
                state = Path(tempfile.mkdtemp(dir=work))
                ours.append(mebibytes / sync_upload(sidecar, local, remote, state))
            else:
                peer.append(mebibytes / sftp_put(sidecar, local / "large.bin", remote))
            _check_count(sidecar, remote, 1)
            sidecar.run(f"rm -rf {remote}")
            figure = (ours if side == "ours" else peer)[-1]
            print(f"  large file, run {run + 1}, {side}: {figure:.0f} MiB/s", file=sys.stderr)
    return Row(
        "large-file",
        f"upload of one {mebibytes} MiB file (MiB/s)",
        Samples(tuple(ours), "MiB/s"),
        "OpenSSH sftp put",
        Samples(tuple(peer), "MiB/s"),
        goal=0.9,
        higher_is_better=True,
        when=now(),
    )
