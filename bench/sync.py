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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bed import Sidecar
from bench.report import Row, Samples, now, turns
from devspace.sync.once import scan_ahead, sync_once
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
    scanned = scan_ahead(local)  # while connecting, as `devspace sync` does
    with (
        sidecar.connection() as connection,
        AncestorStore.for_folder(FolderKey("bench", str(local), remote), state) as store,
    ):
        pod = PodFolder(connection.sftp(), remote)
        report = sync_once(local, pod, store, scanned=scanned.result())
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
    made: list[str] = []
    # The uploaded trees are removed only after the last run. The test bed's disk is ext4
    # without a journal, which skips inodes freed in the last minute (six while their inode
    # table is not yet written out) when it allocates one, a look at each (the kernel's
    # `recently_deleted`): removing 10,000 files before the next run made that run's file
    # creation several times slower, whichever tool it was (issue 7). Anything removed on this
    # disk minutes before a run, by anyone, does the same.
    try:
        for run, side in turns(runs):
            remote = f"/workspace/bench-small-{side}-{run}"
            made.append(remote)
            sidecar.run(f"rm -rf {remote} && mkdir {remote} && sync")
            if side == "ours":
                state = Path(tempfile.mkdtemp(dir=work))
                ours.append(sync_upload(sidecar, local, remote, state))
            else:
                peer.append(rsync_upload(sidecar, local, remote))
            _check_count(sidecar, remote, count)
            figure = (ours if side == "ours" else peer)[-1]
            print(f"  small files, run {run + 1}, {side}: {figure:.2f} s", file=sys.stderr)
    finally:
        sidecar.run(f"rm -rf {' '.join(made)} && sync")  # written out: one minute, not six
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
    for run, side in turns(runs):
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


# --- the live engine: edit-to-visible latency and idle cost ----------------------------------


def _live_session(sidecar: Sidecar, local: Path, remote: str, state: Path, **hooks: Any) -> Any:
    from devspace.sync.live import LiveOptions, SyncSession  # noqa: PLC0415

    key = FolderKey("bench", str(local), remote)
    live = LiveOptions(full_every=3600.0)
    store = AncestorStore.for_folder(key, state)
    return SyncSession(local, store, sidecar.connection, live=live, state_dir=state, **hooks)


def _wait(check: Callable[[], bool], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.0002)


def latency(sidecar: Sidecar, work: Path, edits: int, files: int) -> list[Row]:
    """Edit to visible on the other side, both ways, with `files` files synced and watched.

    Laptop to pod: from writing the file to the engine's confirmation that it was renamed into
    place in the pod. Pod to laptop: from sending the write to a shell already running in the
    pod to the file's new content being readable on the laptop.
    """
    local = work / "latency" / "tree"
    make_small_files(local, files)
    remote = "/workspace/bench-latency"
    sidecar.run(f"rm -rf {remote} && mkdir -p {remote}/gen")
    uploaded: dict[str, float] = {}

    def on_pass(report: Any) -> None:
        for op in report.applied.done if report.applied else ():
            uploaded.setdefault(op.path, time.perf_counter())

    session = _live_session(sidecar, local, remote, work / "latency" / "state", on_pass=on_pass)
    thread = threading.Thread(target=session.run, daemon=True)
    thread.start()

    def idle() -> bool:
        return session.status.state == "idle" and not session.changes.pending()

    _wait(idle, "the first pass")
    up: list[float] = []
    down: list[float] = []
    with sidecar.connection() as connection, connection.exec("sh") as shell:
        for n in range(edits):
            path = f"pkg{n % 100}/edited.py"
            time.sleep(0.05)  # a person types between saves
            uploaded.pop(path, None)
            started = time.perf_counter()
            (local / path).write_text(f"# edit {n}\n")
            _wait(lambda p=path: p in uploaded, f"upload of edit {n}", 30)  # type: ignore[misc]
            up.append(uploaded[path] - started)
            _wait(idle, "the engine to settle", 30)
            target = local / "gen" / "pod.txt"
            time.sleep(0.05)
            started = time.perf_counter()
            shell.write(f"printf 'pod {n}' > {remote}/gen/pod.txt\n".encode())
            _wait(lambda t=target, n=n: _reads(t) == f"pod {n}", f"pod edit {n}", 30)  # type: ignore[misc]
            down.append(time.perf_counter() - started)
            _wait(idle, "the engine to settle", 30)
            print(
                f"  latency, edit {n + 1}: laptop->pod {up[-1] * 1000:.1f} ms, "
                f"pod->laptop {down[-1] * 1000:.1f} ms",
                file=sys.stderr,
            )
        shell.close_stdin()
    session.stop()
    thread.join(30)
    sidecar.run(f"rm -rf {remote}")
    when = now()
    p95_up = _percentile(up, 95)
    return [
        Row("latency-up", f"laptop to pod, median of {edits} edits, {files:,} files watched (s)",
            Samples(tuple(up), "s"), "goal (issue 7)", Samples((0.030,), "s"), 1.0, False, when),
        Row("latency-up-p95", f"laptop to pod, 95th percentile: {p95_up * 1000:.0f} ms (s)",
            Samples((p95_up,), "s"), "goal (issue 7)", Samples((0.100,), "s"), 1.0, False, when),
        Row("latency-down", f"pod to laptop, median of {edits} edits (s)",
            Samples(tuple(down), "s"), "goal (issue 7)", Samples((0.100,), "s"), 1.0, False, when),
    ]  # fmt: skip


def _reads(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _percentile(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def idle_cost(sidecar: Sidecar, work: Path, files: int, seconds: float) -> list[Row]:
    """CPU (% of one core) and resident memory of an engine idle with `files` files watched.

    The engine runs alone in its own process (`idle_engine`), so the figures are its own.
    """
    local = work / "idle" / "tree"
    print(f"  idle: making {files:,} files", file=sys.stderr)
    make_small_files(local, files)
    remote = "/workspace/bench-idle"
    sidecar.run(f"rm -rf {remote} && mkdir {remote}")
    argv = [sys.executable, "-c", "import sys; from bench.sync import idle_engine; idle_engine()"]
    argv += [sidecar.ip, str(sidecar.directory), str(local), remote, str(work / "idle" / "state")]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if child.stdin is None or child.stdout is None:  # pragma: no cover - pipes were asked for
        raise RuntimeError("the engine's pipes are missing")
    try:
        first = float(child.stdout.readline())  # the first pass's seconds, once idle
        print(f"  idle: first pass of {files:,} files took {first:.1f} s", file=sys.stderr)
        cpu, started = _cpu(child.pid), time.perf_counter()
        time.sleep(seconds)
        cpu, elapsed = _cpu(child.pid) - cpu, time.perf_counter() - started
        rss = _rss_mib(child.pid)
        child.stdin.write("full\n")
        child.stdin.flush()
        full_cpu = float(child.stdout.readline())  # CPU seconds of one safety-net full pass
    finally:
        child.kill()
        child.wait()
        sidecar.run(f"rm -rf {remote}")
    percent = 100 * cpu / elapsed
    print(f"  idle: {percent:.2f}% CPU, {rss:.0f} MiB; a full pass {full_cpu:.2f} s CPU",
          file=sys.stderr)  # fmt: skip
    when = now()
    # CPU in ms per second (10 ms/s is 1% of a core): the table prints whole units.
    return [
        Row("idle-cpu", f"idle, {files:,} files watched, {seconds:.0f} s: CPU in ms per s "
            f"(10 = 1% of a core; a safety-net full pass every 600 s adds "
            f"{1000 * full_cpu / 600:.1f})",
            Samples((10 * percent,), "ms/s"), "goal (issue 7)", Samples((10.0,), "ms/s"),
            1.0, False, when),
        Row("idle-rss", f"idle, {files:,} files watched: resident memory (MiB)",
            Samples((rss,), "MiB"), "goal (issue 7)", Samples((200.0,), "MiB"), 1.0, False, when),
    ]  # fmt: skip


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_engine() -> None:
    """The child of `idle_cost`: argv is IP, key directory, local, remote, state directory.

    Prints the first pass's seconds once idle; on a line "full" on stdin, runs one full pass
    and prints its CPU seconds.
    """
    ip, directory, local, remote, state = sys.argv[1:6]
    session = _live_session(Sidecar(ip, Path(directory)), Path(local), remote, Path(state))
    started = time.perf_counter()
    threading.Thread(target=session.run, daemon=True).start()

    def idle() -> bool:
        return session.status.state == "idle" and not session.changes.pending()

    _wait(idle, "the first pass", 1800)
    first = time.perf_counter() - started
    # The pod's watcher reports the first pass's own uploads (a burst, so a full pass): wait
    # until no pass has run for 5 s, so the idle figure is of an idle engine.
    while True:
        passes = session.passes
        time.sleep(5)
        if session.passes == passes and idle():
            break
    print(first, flush=True)
    sys.stdin.readline()
    passes, cpu = session.full_passes, time.process_time()
    session.changes.rescan("bench")
    _wait(lambda: session.full_passes > passes and idle(), "a full pass")
    print(time.process_time() - cpu, flush=True)
    session.stop()
