"""The live engine against the real sidecar: watchers on both sides, the lock, reconnects.

Each test runs a `SyncSession` in a thread between its own local folder and its own folder
under the pod's /workspace, reached with `devspace.ssh.Connection` (one hop, certificate,
pinned host key), and changes files as a developer would: on the laptop directly, in the pod
through a second connection. The periodic full pass is set to an hour, so what arrives within
a test's wait arrived through a watcher (or the recovery under test).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ssh.conftest import *  # noqa: F403
from ssh.conftest import Keys, Sidecar
from watchdog.observers.inotify_c import InotifyFD

from devspace.errors import DevspaceError, SshError
from devspace.ssh import Connection, Hop, Identity, PinnedHostKey
from devspace.sync import live as live_module
from devspace.sync import scope
from devspace.sync.errors import SyncError
from devspace.sync.live import LiveOptions, SyncSession
from devspace.sync.lock import SyncLocked, read_statuses
from devspace.sync.once import PassReport
from devspace.sync.podwatch import RemoteWatcher
from devspace.sync.policy import IgnoreRules
from devspace.sync.remote import PodFolder
from devspace.sync.scan import add_digests, scan
from devspace.sync.snapshot import Kind, Snapshot
from devspace.sync.state import AncestorStore, FolderKey
from devspace.sync.watch import LocalWatcher
from testbed.eventually import eventually

pytestmark = [pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(180)]
QUIET = LiveOptions(full_every=3600.0, reconnect_delays=(0.2,))


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep `devspace sync`'s state (ancestor, lock, status) out of the real home."""
    monkeypatch.setenv("DEVSPACE_STATE_DIR", str(tmp_path / "state-dir"))
    return tmp_path / "state-dir"


@pytest.fixture(scope="module")
def certificate(keys: Keys) -> Path:
    return keys.sign("live")


@pytest.fixture(scope="module")
def connect(sidecar: Sidecar, keys: Keys, certificate: Path) -> Callable[[], Connection]:
    pin = PinnedHostKey.published(keys.path("host.pub").read_text())
    hop = Hop(sidecar.ip, 2222, "dev", pin, name="test sidecar")
    identity = Identity(certificate, Path(f"{certificate}-cert.pub"))
    return lambda: Connection(hop, identity, timeout=10)


@pytest.fixture(scope="module")
def shell(connect: Callable[[], Connection]) -> Iterator[PodFolder]:
    """A second connection, standing in for the developer's shell in the pod."""
    with connect() as connection:
        yield PodFolder(connection.sftp(), "/workspace")


class Live:
    """One test's folders and its engine running in a thread."""

    def __init__(
        self,
        local: Path,
        remote: str,
        state: Path,
        connect: Callable[[], Connection],
        live: LiveOptions,
    ) -> None:
        self.local, self.remote, self.state = local, remote, state
        self.connections: list[Connection] = []

        def connecting() -> Connection:
            self.connections.append(connect())
            return self.connections[-1]

        self.store = AncestorStore.for_folder(FolderKey("space", str(local), remote), state)
        self.session = SyncSession(local, self.store, connecting, live=live, state_dir=state)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.session.run()
        except BaseException as error:
            self.errors.append(error)

    def start(self) -> Live:
        self.thread.start()
        eventually(self.idle, what="the first pass", timeout=60)
        return self

    def idle(self) -> bool:
        assert not self.errors, self.errors
        return self.session.status.state == "idle" and not self.session.changes.pending()

    def stop(self) -> None:
        self.session.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def start(
    shell: PodFolder, connect: Callable[[], Connection], tmp_path: Path
) -> Iterator[Callable[..., Live]]:
    made: list[Live] = []

    def starting(live: LiveOptions = QUIET, *, begin: bool = True) -> Live:
        remote = f"/workspace/live-{uuid.uuid4().hex[:10]}"
        shell.run(f"mkdir -p {remote}")
        local = tmp_path / f"local{len(made)}"
        local.mkdir()
        made.append(Live(local, remote, tmp_path / "state", connect, live))
        return made[-1].start() if begin else made[-1]

    yield starting
    for live in made:
        if live.thread.is_alive():
            live.stop()


def sh(shell: PodFolder, live: Live, script: str) -> str:
    return shell.run(f"cd {shlex.quote(live.remote)} && {script}").decode()


def write(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)


def trees(shell: PodFolder, live: Live) -> tuple[dict[str, str], dict[str, str]]:
    """path -> content hash (or "d"/link target) on the laptop and in the pod."""
    local = scan(live.local, IgnoreRules()).snapshot
    local = add_digests(live.local, local, [p for p, e in local.items() if e.kind is Kind.FILE])
    pod = PodFolder(shell.sftp, live.remote)
    remote = pod.listing(IgnoreRules())
    digests = pod.digests(p for p, e in remote.items() if e.kind is Kind.FILE)
    return (
        {p: e.digest or e.target or e.kind.value for p, e in local.items()},
        {p: digests.get(p) or e.target or e.kind.value for p, e in remote.items()},
    )


def count(folder: Path) -> int:
    """Files in `folder`, sync's temporary files aside."""
    return sum(1 for name in os.listdir(folder) if not name.startswith(".devspace-tmp-"))


def converged(shell: PodFolder, live: Live) -> bool:
    local, remote = trees(shell, live)
    return live.idle() and local == remote


# --- watchers -------------------------------------------------------------------------------


def test_a_local_edit_reaches_the_pod_through_the_watcher(
    start: Callable[..., Live], shell: PodFolder
) -> None:
    live = start()
    assert live.session.status.watching == {"local": "events", "remote": "events"}
    write(live.local / "src" / "app.py", "print('saved on the laptop')\n")

    eventually(
        lambda: (
            sh(shell, live, "cat src/app.py 2>/dev/null || true")
            == "print('saved on the laptop')\n"
        ),
        what="the edit in the pod",
        timeout=20,
    )
    eventually(live.idle, what="the engine to settle", timeout=20)
    assert live.session.full_passes == 1  # the first pass only: the rest was scoped
    assert live.session.passes >= 2


def test_a_laptop_edit_is_put_in_place_without_listing_the_pod(
    start: Callable[..., Live], shell: PodFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    listings: list[object] = []
    passes: list[tuple[PassReport | None, int]] = []
    listing, scoped = scope.pod_scopes, live_module.scoped_pass

    def counted_listing(*args: Any, **kwargs: Any) -> Snapshot:
        listings.append(args[1])
        return listing(*args, **kwargs)

    def recorded_pass(*args: Any, **kwargs: Any) -> PassReport | None:
        before = len(listings)
        report = scoped(*args, **kwargs)
        passes.append((report, len(listings) - before))
        return report

    monkeypatch.setattr(scope, "pod_scopes", counted_listing)
    monkeypatch.setattr(live_module, "scoped_pass", recorded_pass)
    live = start()
    write(live.local / "src" / "app.py", "v1\n")
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=20)
    write(live.local / "src" / "app.py", "v2, saved on the laptop\n")

    eventually(
        lambda: sh(shell, live, "cat src/app.py") == "v2, saved on the laptop\n",
        what="the edit in the pod",
        timeout=20,
    )
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=20)
    uploads = [
        listed
        for report, listed in passes
        if report is not None
        and report.applied is not None
        and any(op.path == "src/app.py" for op in report.applied.done)
    ]
    assert uploads[-1] == 0  # the edit's pass asked the pod only right before the rename


def test_a_pod_edit_not_yet_reported_is_never_overwritten_by_a_laptop_edit(
    start: Callable[..., Live], shell: PodFolder
) -> None:
    live = start()
    write(live.local / "notes.txt", "v1\n")
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=20)
    remote = live.session._remote
    assert remote is not None
    remote.paused.set()  # the pod's events are late (a slow link): its edit is not known yet
    sh(shell, live, "printf 'edited in the pod\n' > notes.txt")
    write(live.local / "notes.txt", "edited on the laptop\n")

    def both_kept() -> bool:
        local, _ = trees(shell, live)
        contents = {(live.local / p).read_text() for p in local if p.startswith("notes")}
        return {"edited in the pod\n", "edited on the laptop\n"} <= contents

    eventually(both_kept, what="both versions on the laptop", timeout=30)
    remote.paused.clear()
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=30)
    assert "notes.txt" in live.session.status.conflicts


def test_a_pod_edit_reaches_the_laptop_through_inotify(
    start: Callable[..., Live], shell: PodFolder
) -> None:
    live = start()
    sh(shell, live, "mkdir -p gen && printf 'lock v1' > gen/pod.lock")

    eventually(
        lambda: (
            (live.local / "gen" / "pod.lock").is_file()
            and (live.local / "gen" / "pod.lock").read_text() == "lock v1"
        ),
        what="the pod's file on the laptop",
        timeout=20,
    )
    sh(shell, live, "rm gen/pod.lock")
    eventually(
        lambda: not (live.local / "gen" / "pod.lock").exists(),
        what="the pod's delete on the laptop",
        timeout=20,
    )
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=20)
    assert live.session.full_passes == 1


def test_without_inotifywait_in_the_pod_the_engine_polls(
    start: Callable[..., Live], shell: PodFolder
) -> None:
    live = start(LiveOptions(full_every=3600.0, poll_every=0.5, watcher="inotifywait-missing"))
    assert live.session.status.watching["remote"] == "polling"
    sh(shell, live, "printf 'made in the pod' > polled.txt")

    eventually(
        (live.local / "polled.txt").is_file,
        what="the polled file on the laptop",
        timeout=20,
    )
    write(live.local / "up.txt", "from the laptop")
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=20)


def test_a_pod_watcher_overflow_is_recovered_by_a_full_pass(
    start: Callable[..., Live], shell: PodFolder
) -> None:
    live = start()
    remote = live.session._remote  # the running pod watcher
    assert remote is not None
    # A reader that stops reading (a slow link) stalls inotifywait; the kernel then drops
    # events past its queue (16,384 here) and inotifywait says nothing about it.
    sh(shell, live, "mkdir many")
    eventually((live.local / "many").is_dir, what="the folder on the laptop", timeout=20)
    remote.paused.set()
    sh(shell, live, "cd many && seq -f f%.0f 1 20000 | xargs touch")
    time.sleep(1)
    before = live.session.full_passes
    remote.paused.clear()

    eventually(
        lambda: live.idle() and count(live.local / "many") == 20000,
        what="all 20,000 files on the laptop",
        timeout=120,
    )
    assert live.session.full_passes > before
    assert any("burst of events on the remote side" in r for r in live.session.full_reasons)


@contextlib.contextmanager
def small_inotify_queue(events: int = 16) -> Iterator[None]:
    """Watchers started inside get a kernel event queue of `events`, so a burst overflows it
    for real. The kernel reads the limit once, when a watcher is made (inotify_init): it is
    put back at once, and other programs on the machine start theirs with the normal size."""
    knob = Path("/proc/sys/fs/inotify/max_queued_events")
    before = knob.read_text()
    knob.write_text(f"{events}\n")
    try:
        yield
    finally:
        knob.write_text(before)


def test_a_laptop_inotify_overflow_is_recovered_by_a_full_pass(
    start: Callable[..., Live], shell: PodFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    starting = LocalWatcher.start
    made: list[InotifyFD] = []

    def with_a_small_queue(self: LocalWatcher) -> None:
        # watchdog shares one inotify instance per process, made by the first watcher (an
        # earlier test's): this watcher gets one of its own, made while the queue is small.
        monkeypatch.setattr(InotifyFD, "_instance", None)
        with small_inotify_queue():
            starting(self)
            made.append(InotifyFD.get_instance())

    monkeypatch.setattr(LocalWatcher, "start", with_a_small_queue)
    # Bursts alone never ask for a full pass here: only watchdog's overflow notice may.
    live = start(LiveOptions(full_every=3600.0, burst_limit=10**9))
    subprocess.run(
        ["sh", "-c", f"mkdir {live.local}/many && cd {live.local}/many "
         "&& seq -f f%.0f 1 5000 | xargs touch"],
        check=True,
    )  # fmt: skip

    eventually(
        lambda: sh(shell, live, "ls many 2>/dev/null | wc -l").strip() == "5000",
        what="all 5,000 files in the pod",
        timeout=120,
    )
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=60)
    reasons = live.session.full_reasons
    live.stop()
    made[0].stop()  # this test's own inotify instance
    assert any("laptop's file events overflowed" in r for r in reasons), reasons


def test_a_pod_inotify_overflow_is_recovered_by_a_full_pass(
    start: Callable[..., Live], shell: PodFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    starting = RemoteWatcher.start

    def with_a_small_queue(self: RemoteWatcher, timeout: float = 60.0) -> None:
        with small_inotify_queue():
            starting(self, timeout)

    monkeypatch.setattr(RemoteWatcher, "start", with_a_small_queue)
    live = start(LiveOptions(full_every=3600.0, burst_limit=10**9))
    # This test's inotifywait (the one in its folder) is stopped while the files are made:
    # its 16-event queue overflows, and it prints Q_OVERFLOW once it runs again.
    watcher = (
        f"for p in $(pgrep -x inotifywait); do "
        f'[ "$(readlink /proc/$p/cwd)" = {shlex.quote(live.remote)} ] && echo $p; done'
    )
    pid = sh(shell, live, watcher).split()
    assert len(pid) == 1, pid
    sh(shell, live, "mkdir many")  # watched before the files come: their events are queued
    eventually((live.local / "many").is_dir, what="the folder on the laptop", timeout=20)
    sh(shell, live, f"kill -STOP {pid[0]} && cd many "
       f"&& seq -f f%.0f 1 2000 | xargs touch; kill -CONT {pid[0]}")  # fmt: skip

    eventually(
        lambda: live.idle() and count(live.local / "many") == 2000,
        what="all 2,000 files on the laptop",
        timeout=120,
    )
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=60)
    reasons = live.session.full_reasons
    assert any("pod's file events overflowed" in r for r in reasons), reasons


# --- the engine -----------------------------------------------------------------------------


def test_a_second_engine_on_the_same_folder_is_refused(
    start: Callable[..., Live], connect: Callable[[], Connection], tmp_path: Path
) -> None:
    live = start()
    store = AncestorStore.for_folder(live.store.key, live.state)
    second = SyncSession(live.local, store, connect, live=QUIET, state_dir=live.state)

    with pytest.raises(SyncLocked, match="already syncing") as refused:
        second.run()

    assert f"process {os.getpid()}" in str(refused.value)
    assert str(live.local) in str(refused.value)
    (status,) = read_statuses(live.state)
    assert (status["state"], status["local"]) == ("idle", str(live.local))


def test_a_dropped_connection_is_reopened_and_nothing_is_lost(
    start: Callable[..., Live], shell: PodFolder
) -> None:
    live = start()
    transport = live.connections[-1].sftp().get_channel()
    assert transport is not None
    transport.get_transport().close()  # the Wi-Fi drops
    write(live.local / "while-away.txt", "written while the connection was down")
    sh(shell, live, "printf 'pod, meanwhile' > pod-meanwhile.txt")

    eventually(lambda: len(live.connections) >= 2, what="a new connection", timeout=20)
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=30)
    assert sh(shell, live, "cat while-away.txt") == "written while the connection was down"
    assert (live.local / "pod-meanwhile.txt").read_text() == "pod, meanwhile"
    assert live.session.reconnects >= 1
    # And the watchers work on the new connection.
    sh(shell, live, "printf 'after' > after.txt")
    eventually((live.local / "after.txt").exists, what="a later pod edit", timeout=20)


def test_a_branch_switch_of_a_thousand_files_converges_in_the_live_loop(
    start: Callable[..., Live], shell: PodFolder
) -> None:
    live = start(begin=False)

    def module(n: int) -> Path:
        return live.local / f"pkg{n % 30}" / f"mod{n}.py"

    for n in range(2400):
        write(module(n), f"# module {n}\n")
    live.start()
    assert sh(shell, live, "find . -type f | wc -l").strip() == "2400"

    # `git checkout other-branch`: 300 deleted, 300 moved to a new package, 100 edited, 300 new.
    started = time.monotonic()
    (live.local / "moved").mkdir()
    expected = {}
    for n in range(0, 1200, 4):
        module(n).unlink()
        module(n + 1).rename(live.local / "moved" / f"mod{n + 1}.py")
        if n % 12 == 0:
            write(module(n + 2), f"# module {n + 2}, edited on the branch\n")
        write(live.local / "new" / f"file{n}.txt", f"new {n}\n" * (n % 7))
        expected[f"new/file{n}.txt"] = f"new {n}\n" * (n % 7)

    eventually(lambda: converged(shell, live), what="the branch switch in the pod", timeout=60)
    elapsed = time.monotonic() - started
    print(f"\nbranch switch converged in the live loop in {elapsed:.2f} s")
    local, _ = trees(shell, live)
    assert len([p for p in local if p.endswith((".py", ".txt"))]) == 2400 - 300 + 300
    assert not live.session.status.conflicts
    assert sh(shell, live, "cat pkg2/mod2.py") == "# module 2, edited on the branch\n"
    assert not any("conflict" in p for p in local)


# --- `devspace sync --once` -----------------------------------------------------------------


def test_sync_once_prints_the_plan_on_a_dry_run_then_applies_it(
    start: Callable[..., Live], shell: PodFolder, connect: Callable[[], Connection]
) -> None:
    from devspace.commands.sync import Run, plan_text  # noqa: PLC0415

    live = start(begin=False)  # its folders only: no engine runs
    write(live.local / "a.txt", "from the laptop")
    sh(shell, live, "printf 'from the pod' > b.txt")
    run = Run("space", live.local, live.remote, connect, err=io.StringIO())

    planned = run.once(dry_run=True)

    assert sorted((o["op"], o["side"], o["path"]) for o in planned["operations"]) == [
        ("download", "local", "b.txt"),
        ("upload", "remote", "a.txt"),
    ]
    assert "dry run: 2 operations planned, none applied" in plan_text(planned)
    assert sh(shell, live, "ls") == "b.txt\n"
    assert not (live.local / "b.txt").exists()

    done = run.once()

    assert done["done"] == 2
    assert json.loads(json.dumps(done))["stale"] == []
    assert sh(shell, live, "cat a.txt") == "from the laptop"
    assert (live.local / "b.txt").read_text() == "from the pod"


def test_sync_once_stops_at_a_brake_unless_told_to_go_on(
    start: Callable[..., Live], shell: PodFolder, connect: Callable[[], Connection]
) -> None:
    from devspace.commands.sync import Run  # noqa: PLC0415

    live = start(begin=False)
    for n in range(5):
        write(live.local / f"file{n}", str(n))
    run = Run("space", live.local, live.remote, connect, err=io.StringIO())
    run.once()
    sh(shell, live, "rm -f ./*")  # the pod's folder emptied: a new volume, say

    with pytest.raises(SyncError, match=r"safety brake.*--yes") as stopped:
        run.once()

    assert stopped.value.exit_code == 1
    assert len(list(live.local.iterdir())) == 5
    Run("space", live.local, live.remote, connect, yes=True, err=io.StringIO()).once()
    assert list(live.local.iterdir()) == []


def test_sync_refuses_bad_arguments_with_usage_errors(tmp_path: Path) -> None:
    from devspace.main import run  # noqa: PLC0415

    assert run(["sync", "--remote", "relative/path", "--local", str(tmp_path)]) == 2
    assert run(["sync", "--output", "json", "--local", str(tmp_path)]) == 2
    assert run(["sync", "--local", str(tmp_path / "missing")]) == 2


def test_a_first_sync_once_makes_the_pod_folder(
    shell: PodFolder, connect: Callable[[], Connection], tmp_path: Path
) -> None:
    from devspace.commands.sync import Run  # noqa: PLC0415

    remote = f"/workspace/new-{uuid.uuid4().hex[:10]}/deeper"
    write(tmp_path / "local" / "hello.txt", "hello")
    Run("space", tmp_path / "local", remote, connect, err=io.StringIO()).once()
    assert shell.run(f"cat {remote}/hello.txt") == b"hello"


def test_a_space_unreachable_for_a_while_is_retried_until_it_is_back(
    start: Callable[..., Live], shell: PodFolder
) -> None:
    live = start()
    working = live.session.connect
    refusals = [DevspaceError("space restarting"), SshError("connection refused")]

    def flaky() -> Connection:
        if refusals:
            raise refusals.pop(0)
        return working()

    live.session.connect = flaky
    channel = live.connections[-1].sftp().get_channel()
    assert channel is not None
    channel.get_transport().close()
    sh(shell, live, "printf 'back' > back.txt")

    eventually((live.local / "back.txt").exists, what="the file after the outage", timeout=30)
    assert not refusals
    assert live.session.reconnects >= 3
