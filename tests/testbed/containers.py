"""One test-node container across its restarts (test infrastructure).

A Container knows its runs (Attempts: a launcher process from testbed.container and the
directory with its spec, pid and log), why it waits, how its last run ended, its restart
count and back-off, and renders all that as the pod status's container entry, as kubelet does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import images, probes
from testbed.kubeapi import Object, now

LAUNCHER = Path(__file__).resolve().with_name("container.py")
# Restart back-off: kubelet's shape (doubling, reset after a long run), with shorter numbers
# so that tests watching a crashing container need not wait minutes.
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 10.0
BACKOFF_RESET = 60.0
# kubelet reports ErrImagePull on a failed pull and ImagePullBackOff while it waits to retry.
PULL_BACKOFF_SHOWN_AFTER = 2.0


@dataclass
class Attempt:
    """One run of a container: its launcher process and the directory it keeps files in."""

    process: subprocess.Popen[bytes]
    directory: Path
    container_id: str
    started_at: str | None = None  # set once the command runs (the launcher says so)
    began: float = field(default_factory=time.monotonic)

    def running(self) -> bool:
        """Whether the command has started (its exec succeeded): the launcher wrote `pid`."""
        if self.started_at is None and (self.directory / "pid").exists():
            self.started_at = now()
        return self.started_at is not None

    def pid(self) -> int | None:
        """The container process's host PID, once it runs."""
        try:
            return int((self.directory / "pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def signal(self, number: int) -> None:
        """Send a signal to the launcher, which passes it on to the container's process."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, number)

    def kill(self) -> None:
        """SIGKILL the container's process; its launcher then reaps it and exits with 137.

        (Killing the launcher instead would leave the process a zombie of the host's init.)
        """
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid() or self.process.pid, signal.SIGKILL)


class Container:
    """One container of a pod across its restarts."""

    def __init__(self, spec: Object, *, init: bool) -> None:
        """`spec` is the container's entry in the pod spec."""
        self.spec = spec
        self.name: str = spec["name"]
        self.image: str = spec.get("image", "")
        self.init = init
        # An init container with restartPolicy Always is a sidecar: it keeps running.
        self.sidecar = init and spec.get("restartPolicy") == "Always"
        self.attempt: Attempt | None = None
        self.has_run = False
        self.restart_count = 0
        # Why this container (rather than its pod) waits: image, config or crash back-off.
        self.waiting: tuple[str, str] | None = None
        self.terminated: Object | None = None
        self.last: Object | None = None
        self.next_try = 0.0
        self.backoff = 0.0
        self.pull_failed = 0.0
        self.probes = probes.ProbeState(spec)

    @property
    def succeeded(self) -> bool:
        """Ran to completion with exit code 0 (and will not run again)."""
        return self.terminated is not None and self.terminated["exitCode"] == 0

    def running(self) -> bool:
        """Its command is running."""
        running = self.attempt is not None and self.attempt.running()
        self.has_run |= running
        return running

    def ready(self) -> bool:
        """Running, and its readiness probe (if any) passes."""
        return self.running() and self.probes.ready

    def due(self) -> bool:
        """Not running, and any back-off has passed."""
        return self.attempt is None and time.monotonic() >= self.next_try

    def restarts(self, policy: str) -> bool:
        """Whether it runs again after its run ended, under the pod's restartPolicy."""
        exit_code = (self.terminated or self.last or {}).get("exitCode", 0)
        if self.sidecar:
            return True
        if self.init:
            return exit_code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    def start(self, launcher_spec: dict[str, Any], directory: Path, pod_uid: str) -> None:
        """Start a run through the launcher; `launcher_spec` is testbed.container's SPEC."""
        (directory / "spec.json").write_text(json.dumps(launcher_spec, indent=1))
        with (directory / "log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-I", str(LAUNCHER), "run", str(directory / "spec.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.attempt = Attempt(
            process, directory, f"testbed://{pod_uid[:8]}-{self.name}-{self.restart_count}"
        )
        self.waiting = None
        self.probes.restart()

    def cannot_pull(self, message: str) -> None:
        """Its image is not in the table: wait as for an image that cannot be pulled."""
        self.waiting = ("ErrImagePull", message)
        self.pull_failed = time.monotonic()
        self._back_off()

    def cannot_configure(self, message: str, retry: float) -> None:
        """Its config is wrong (missing Secret, root under runAsNonRoot): wait, retry later."""
        self.waiting = ("CreateContainerConfigError", message)
        self.next_try = time.monotonic() + retry

    def collect(self) -> bool:
        """Record the end of a run that has ended; True if one had."""
        attempt = self.attempt
        if attempt is None or attempt.process.poll() is None:
            return False
        self.attempt = None
        attempt.running()  # it may have started and ended between two looks
        code = attempt.process.returncode
        if code < 0:  # the launcher itself was killed, and its container with it
            code = 128 - code
        state: Object = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": attempt.started_at or now(),
            "finishedAt": now(),
            "containerID": attempt.container_id,
        }
        error = attempt.directory / "error"
        if error.exists():
            state["reason"] = "StartError"
            state["message"] = error.read_text(errors="replace")
        elif code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            state["message"] = _tail(attempt.directory / "log")
        self.terminated = state
        if time.monotonic() - attempt.began > BACKOFF_RESET:
            self.backoff = 0
        return True

    def back_off_restart(self, pod: str) -> None:
        """It ended and will run again after the back-off: CrashLoopBackOff until then."""
        self._back_off()
        self.waiting = (
            "CrashLoopBackOff",
            f"back-off {self.backoff:g}s restarting failed container={self.name} pod={pod}",
        )
        self.last, self.terminated = self.terminated, None
        self.restart_count += 1

    def _back_off(self) -> None:
        self.backoff = min(max(self.backoff * 2, BACKOFF_INITIAL), BACKOFF_MAX)
        self.next_try = time.monotonic() + self.backoff

    def status(self, pod_waiting: tuple[str, str]) -> Object:
        """Its entry in (init)containerStatuses.

        `pod_waiting` is the reason to report when it waits for the pod rather than for
        anything of its own (ContainerCreating, PodInitializing).
        """
        if self.running():
            assert self.attempt is not None
            state: Object = {"running": {"startedAt": self.attempt.started_at}}
        elif self.attempt is not None:
            state = {"waiting": {"reason": "ContainerCreating"}}
        elif self.terminated is not None:
            state = {"terminated": self.terminated}
        else:
            reason, message = self.waiting or pod_waiting
            if (
                reason == "ErrImagePull"
                and time.monotonic() - self.pull_failed > PULL_BACKOFF_SHOWN_AFTER
            ):
                reason, message = "ImagePullBackOff", f'Back-off pulling image "{self.image}"'
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status: Object = {
            "name": self.name,
            "image": self.image,
            "imageID": f"testbed://{images.repository(self.image)}",
            "ready": self.ready(),
            "started": self.running() and self.probes.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last} if self.last else {},
        }
        if self.attempt is not None:
            status["containerID"] = self.attempt.container_id
        elif self.terminated is not None:
            status["containerID"] = self.terminated["containerID"]
        return status


def reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a launcher or sandbox process to end; SIGKILL it if it does not soon."""
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path, limit: int = 2048) -> str:
    try:
        return log.read_bytes()[-limit:].decode(errors="replace")
    except OSError:
        return ""
