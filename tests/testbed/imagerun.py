"""Run a process of a built image (testbed.rootfs) as a container would, without Docker.

`python3 -m testbed.imagerun SPEC.json` (as root) is the container's parent: it enters the
network namespace the spec names (else stays in the caller's), creates mount and PID
namespaces and forks the container's init, which

- mounts an overlay whose lower layer is the image's tree (never written: the cache stays as
  built) and whose upper layer is a tmpfs, as a container's writable layer;
- gives it /proc, a small /dev (null, zero, full, random, urandom, tty, devpts, a /dev/shm
  tmpfs), the host's /etc/hosts and /etc/resolv.conf (as Docker binds them), the spec's
  tmpfs mounts and bind-mounted volumes (read-only where asked);
- makes the root read-only if asked (readOnlyRootFilesystem), chroots, takes on the uid, gid
  and groups, sets no_new_privs (allowPrivilegeEscalation: false) and execs the command with
  exactly the spec's environment.

It passes SIGTERM and SIGINT on and exits with the container's status; the container dies with
it. `start()` is the test-side helper that writes the spec and starts this. Namespace calls
come from testbed.container, which runs the test node's pods the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.container import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    PR_SET_NO_NEW_PRIVS,
    _check,
    _libc,
    die_with_parent,
    mount,
    setns,
    unshare,
)

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
HOST_FILES = ("/etc/hosts", "/etc/resolv.conf")


def _mount_point(path: str, directory: bool) -> None:
    if directory:
        os.makedirs(path, exist_ok=True)
    elif not os.path.lexists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).touch()


def _bind(source: str, target: str, read_only: bool) -> None:
    _mount_point(target, os.path.isdir(source))
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _dev(root: str) -> None:
    dev = f"{root}/dev"
    os.makedirs(dev, exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEVICES:
        _bind(f"/dev/{name}", f"{dev}/{name}", read_only=False)
    os.mkdir(f"{dev}/pts")
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.mkdir(f"{dev}/shm")
    mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{number}", f"{dev}/{name}")
    os.symlink("/proc/self/fd", f"{dev}/fd")


def _become_container(spec: dict[str, Any]) -> None:
    die_with_parent()
    os.setsid()
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    scratch = spec["scratch"]
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    for name in ("upper", "work", "root"):
        os.mkdir(f"{scratch}/{name}")
    root = f"{scratch}/root"
    layers = f"lowerdir={spec['rootfs']},upperdir={scratch}/upper,workdir={scratch}/work"
    mount("overlay", root, "overlay", 0, layers)
    os.makedirs(f"{root}/proc", exist_ok=True)
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _dev(root)
    for path in HOST_FILES:
        _bind(path, f"{root}{path}", read_only=True)
    for target, options in spec["tmpfs"]:
        _mount_point(f"{root}{target}", directory=True)
        mount("tmpfs", f"{root}{target}", "tmpfs", MS_NOSUID | MS_NODEV, options)
    for source, target, read_only in spec["volumes"]:
        _bind(source, f"{root}{target}", read_only)
    if spec["readOnlyRoot"]:
        mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    os.chroot(root)
    os.umask(0o022)  # what container runtimes start a container's process with
    os.chdir(spec["workdir"])
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
    die_with_parent()  # a change of uid clears it
    argv = spec["argv"]
    os.execvpe(argv[0], argv, spec["env"])  # noqa: S606 - the container's own command


def run(spec: dict[str, Any]) -> int:
    """Start the container of `spec` (see module docstring); returns its exit status."""
    die_with_parent()
    if spec.get("netns"):
        setns(spec["netns"], CLONE_NEWNET)
    unshare(CLONE_NEWNS | CLONE_NEWPID)
    child = os.fork()
    if child == 0:
        try:
            _become_container(spec)
        except BaseException as error:  # the container could not start: say why, exit 127
            print(f"imagerun: {error}", file=sys.stderr, flush=True)
        os._exit(127)

    def forward(number: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, number)

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, forward)
    _, status = os.waitpid(child, 0)
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@dataclass
class Container:
    """How to run one process of an image; `start()` it (test side)."""

    rootfs: Path
    scratch: Path
    """An empty directory, the writable layer's mount point (a tmpfs is mounted there)."""
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
        return {
            "rootfs": str(self.rootfs),
            "scratch": str(self.scratch),
            "argv": list(self.argv),
            "env": dict(self.env),
            "uid": self.uid,
            "gid": self.gid,
            "groups": list(self.groups),
            "workdir": self.workdir,
            "volumes": [(str(s), t, ro) for s, t, ro in self.volumes],
            "tmpfs": [list(t) for t in self.tmpfs],
            "readOnlyRoot": self.read_only_root,
            "netns": str(self.netns) if self.netns else None,
        }


def start(container: Container) -> subprocess.Popen[bytes]:
    """Start `container`; its stdout and stderr go to `container.log` (else are inherited)."""
    container.scratch.mkdir(parents=True, exist_ok=True)
    spec = container.scratch.with_name(container.scratch.name + ".json")
    spec.write_text(json.dumps(container.spec()))
    output = open(container.log, "ab") if container.log else None  # noqa: SIM115 - the child's
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "testbed.imagerun", str(spec)],
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": os.defpath},
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


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m testbed.imagerun SPEC.json", file=sys.stderr)
        return 2
    return run(json.loads(Path(argv[0]).read_text()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
