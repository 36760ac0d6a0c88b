"""What `devspace up` keeps running once the space runs: port tunnels, the live sync of each
folder, and a terminal (or nothing in the foreground, until Ctrl-C).

Tunnels (`devspace.tunnels`) and each folder's sync (`devspace.sync.live`) run in their own
threads, each over its own connection from `connect`, and each reconnects by itself after a
drop. Leaving — the shell exits, or Ctrl-C without a terminal — stops them all, and waits for
them, so no half-applied sync pass or listening port is left behind. While it runs, what it
forwards is in `<state dir>/up/<space>.json`, for `devspace status` in another terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devspace.config import state_dir, write_atomically
from devspace.errors import DevspaceError
from devspace.project import PortForward, SyncFolder
from devspace.ssh import Connection

log = logging.getLogger(__name__)
_STOP_WAIT = 30.0  # seconds to wait for a sync pass to finish after Ctrl-C


class _Worker(threading.Thread):
    """A thread that keeps the error its target raised, for the main thread to report."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self._target_call = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_call()
        except BaseException as error:
            self.error = error


@dataclass
class Session:
    """The tunnels and syncs of one space. `start`, then `hold` or `terminal`; `stop` always."""

    space: str
    connect: Callable[[], Connection]
    ports: Sequence[PortForward] = ()
    folders: Sequence[SyncFolder] = ()
    say: Callable[[str], None] = log.info
    _workers: list[_Worker] = field(default_factory=list)
    _stoppers: list[Callable[[], None]] = field(default_factory=list)
    _in_terminal: bool = False
    _ports: list[dict[str, Any]] = field(default_factory=list)

    def _tell(self, text: str) -> None:
        # While the shell owns the terminal (raw mode) a line from here would garble its
        # screen: it goes to the debug log only.
        log.info("%s", text)
        if not self._in_terminal:
            self.say(text)

    def start(self) -> None:
        """Listen on every forwarded port and start each folder's sync.

        Raises `ForwardError` for a local port in use, and what connecting raises.
        """
        if self.ports:
            self._start_tunnels()
        for folder in self.folders:
            self._start_sync(folder)

    def _start_tunnels(self) -> None:
        from devspace.tunnels import PortPair, Tunnels  # noqa: PLC0415 - only when forwarding

        def said(text: str) -> None:
            self._tell(f"ports: {text}")
            self._note_tunnels(text)

        pairs = [PortPair(local=p.local, remote=p.port) for p in self.ports]
        tunnels = Tunnels(self.connect, pairs, say=said)
        tunnels.start()
        self._stoppers.append(tunnels.close)
        self._run("tunnels", tunnels.run)
        for port, forward in zip(self.ports, tunnels.forwards, strict=True):
            self._tell(f"forwarding 127.0.0.1:{forward.port} to port {port.port} ({port.name})")
            self._ports.append({"local": forward.port, "remote": port.port, "name": port.name})
        self._note_tunnels("forwarding")

    def _note_tunnels(self, state: str) -> None:
        # For `devspace status` in another terminal; the sync engine writes its own.
        if self._ports:
            write_session_status(
                self.space,
                {
                    "pid": os.getpid(),
                    "ports": self._ports,
                    "tunnels": state,
                    "updated": time.time(),
                },
            )

    def _start_sync(self, folder: SyncFolder) -> None:
        from devspace.sync.live import Status, SyncSession  # noqa: PLC0415 - only when syncing
        from devspace.sync.plan import PlanOptions  # noqa: PLC0415
        from devspace.sync.policy import DirectionRules, NameRules  # noqa: PLC0415
        from devspace.sync.state import AncestorStore, FolderKey  # noqa: PLC0415

        if not folder.local.is_dir():
            raise DevspaceError(
                f"the sync folder {folder.local} does not exist: create it, or change `sync` "
                "in devspace.yaml"
            )
        key = FolderKey(self.space, str(folder.local), folder.remote)
        where = f"sync {folder.local} <-> {folder.remote}"
        last: list[Any] = [None]

        def on_status(status: Status) -> None:
            if status.state == "syncing":
                return  # passes come and go every few seconds; what they end in matters
            shown = (status.state, status.message, status.conflicts)
            if shown != last[0]:
                last[0] = shown
                extra = f": {status.message}" if status.message else ""
                conflicts = f" ({len(status.conflicts)} conflicts)" if status.conflicts else ""
                self._tell(f"{where}: {status.state}{extra}{conflicts}")

        self._make_remote_folder(folder.remote)
        options = PlanOptions(
            local_names=NameRules.for_platform(),
            directions=DirectionRules(folder.no_upload, folder.no_download),
        )
        session = SyncSession(
            folder.local,
            AncestorStore.for_folder(key),
            self.connect,
            options=options,
            ignore=folder.ignore,
            gitignore=folder.gitignore,
            on_status=on_status,
        )
        self._stoppers.append(session.stop)
        self._run(f"sync {folder.local}", session.run)

    def _make_remote_folder(self, remote: str) -> None:
        # The engine treats a missing pod folder as a warning sign (a wiped volume) and syncs
        # nothing into it; a folder devspace.yaml names is made here, on purpose, once.
        with self.connect() as connection:
            made = connection.run(["mkdir", "-p", "--", remote], timeout=30)
        if made.exit_status != 0:
            why = made.stderr.decode(errors="replace").strip()
            raise DevspaceError(f"cannot make {remote} in space {self.space}: {why}")

    def _run(self, name: str, target: Callable[[], None]) -> None:
        worker = _Worker(name, target)
        self._workers.append(worker)
        worker.start()

    def failed(self) -> BaseException | None:
        """The error of a worker that has stopped by itself, if one has."""
        for worker in self._workers:
            if not worker.is_alive() and worker.error is not None:
                return worker.error
        return None

    def hold(self, interval: float = 0.5) -> None:
        """Keep everything running until Ctrl-C (which returns normally) or until a worker
        fails (its error is raised)."""
        wake = threading.Event()
        try:
            while not wake.wait(interval):
                error = self.failed()
                if error is not None:
                    raise error
                if self._workers and not any(w.is_alive() for w in self._workers):
                    return
        except KeyboardInterrupt:
            self._tell("stopping")

    def terminal(self) -> int:
        """A shell in the space on this terminal until it exits; returns its exit status.

        Raises `SshError` if the connection is lost under the shell.
        """
        from devspace.commands.shell import in_terminal  # noqa: PLC0415 - `devspace ssh`'s own

        with self.connect() as connection:
            connection.open()
            self._in_terminal = True
            try:
                return in_terminal(connection)
            finally:
                self._in_terminal = False

    def stop(self) -> None:
        """Stop every worker and wait for them (a sync pass finishes first)."""
        if self._ports:
            session_status_path(self.space).unlink(missing_ok=True)
        for stop in reversed(self._stoppers):
            with contextlib.suppress(DevspaceError):
                stop()
        for worker in self._workers:
            worker.join(_STOP_WAIT)
            if worker.is_alive():
                log.warning("%s did not stop within %s s", worker.name, _STOP_WAIT)
        self._stoppers.clear()


def session_status_path(space: str) -> Path:
    """Where a running `devspace up` for `space` says what it forwards."""
    return state_dir() / "up" / f"{space}.json"


def write_session_status(space: str, summary: dict[str, Any]) -> None:
    """Replace `space`'s session summary; a failure is ignored (it is advice)."""
    with contextlib.suppress(OSError):
        write_atomically(session_status_path(space), json.dumps(summary).encode())


def read_session_status(space: str) -> dict[str, Any] | None:
    """What a running `devspace up` for `space` forwards, or None when none runs."""
    try:
        found: dict[str, Any] = json.loads(session_status_path(space).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    pid = found.get("pid")
    if os.name == "posix" and isinstance(pid, int):
        try:
            os.kill(pid, 0)  # left behind by an `up` that was killed: nothing runs
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return found
