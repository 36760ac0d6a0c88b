"""Run a process of a built image (testbed.rootfs) as a container would, without Docker.

`start()` runs a Container through the test node's own launcher (testbed.container, with the
spec's `image` set and no pod sandbox), so the images' tests and the test node's pods get
their roots in one way: it enters the network namespace the Container names (else stays in
the caller's), creates mount and PID namespaces and forks the container's process, which

- gets an overlay whose lower layer is the image's tree (never written: the cache stays as
  built) and whose upper layer is a tmpfs, as a container's writable layer;
- gets /proc, a small /dev (null, zero, full, random, urandom, tty, devpts, a /dev/shm
  tmpfs), the host's /etc/hosts and /etc/resolv.conf (as Docker binds them), the tmpfs
  mounts and bind-mounted volumes asked for (read-only where asked);
- has a read-only root if asked (readOnlyRootFilesystem), is chrooted, takes on the uid,
  gid and groups, sets no_new_privs (allowPrivilegeEscalation: false) and execs the command
  with exactly the given environment.

The launcher passes SIGTERM and SIGINT on and exits with the container's status (128 when
the container could not be set up or its command not run: the reason is in the log and in
the `error` file beside the spec); the container dies with it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAUNCHER = Path(__file__).resolve().with_name("container.py")


@dataclass
class Container:
    """How to run one process of an image; `start()` it (test side)."""

    rootfs: Path
    scratch: Path
    """A directory for the launcher's spec, pid and error files; the root is built in its
    `root` (a tmpfs mounted there, in the container's mount namespace only)."""
    argv: Sequence[str]
    env: Mapping[str, str]
    uid: int
    gid: int
    groups: Sequence[int] = ()
    workdir: str = "/"
    volumes: Sequence[tuple[Path, str, bool]] = ()
    """(host path, path inside, read-only)"""
    tmpfs: Sequence[tuple[str, str]] = ()
    """(path inside, mount options)"""
    read_only_root: bool = False
    netns: Path | None = None
    log: Path | None = None

    def spec(self) -> dict[str, Any]:
        """The launcher's SPEC (see testbed.container): no pod sandbox, this image's root."""
        return {
            "image": str(self.rootfs),
            "state": str(self.scratch),
            "root": str(self.scratch / "root"),
            "netns": str(self.netns) if self.netns else None,
            "sandbox": None,
            "sharePid": False,
            "argv": list(self.argv),
            "env": dict(self.env),
            "uid": self.uid,
            "gid": self.gid,
            "groups": list(self.groups),
            "noNewPrivs": True,
            "cwd": self.workdir,
            "mounts": [
                {"source": str(source), "target": target, "readOnly": read_only}
                for source, target, read_only in self.volumes
            ],
            "tmpfs": [list(t) for t in self.tmpfs],
            "directories": [],
            "readOnlyRoot": self.read_only_root,
        }


def start(container: Container) -> subprocess.Popen[bytes]:
    """Start `container`; its stdout and stderr go to `container.log` (else are inherited)."""
    (container.scratch / "root").mkdir(parents=True, exist_ok=True)
    spec = container.scratch / "spec.json"
    spec.write_text(json.dumps(container.spec()))
    output = open(container.log, "ab") if container.log else None  # noqa: SIM115 - the child's
    try:
        return subprocess.Popen(
            [sys.executable, "-I", str(LAUNCHER), "run", str(spec)],
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
        )
    finally:
        if output:
            output.close()


@contextlib.contextmanager
def running(container: Container) -> Iterator[subprocess.Popen[bytes]]:
    """`start()` it, and stop it (SIGTERM, then SIGKILL after 10 s) when the block ends."""
    process = start(container)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
