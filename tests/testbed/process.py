"""Processes that the test bed starts: logged to files, and never outliving the test run."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If pytest is killed outright, the kernel sends SIGKILL to the child too, so a crashed
    # run leaves no etcd or apiserver behind holding ports and data directories.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A child process whose output goes to `log`; stop() ends it and its process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
                # Runs after the uid change, so the setting survives it. The test bed starts
                # processes from one thread at a time, where preexec_fn is safe.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log, for error messages."""
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Send SIGTERM to the process group, then SIGKILL if it has not ended in `timeout`."""
        if not self.alive():
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


class StartError(RuntimeError):
    """A test-bed component did not become ready."""


def wait_until(
    ready: Callable[[], bool], *, what: str, timeout: float, process: Process | None = None
) -> None:
    """Poll `ready` until it returns True; raise StartError with the process log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise StartError(
                f"{what}: process exited ({process.popen.returncode})\n{process.tail()}"
            )
        try:
            if ready():
                return
        except Exception:  # noqa: S110 - not up yet; retry until the deadline
            pass
        time.sleep(0.1)
    tail = process.tail() if process is not None else ""
    raise StartError(f"{what}: not ready after {timeout:.0f} s\n{tail}")
