"""The processes that become a test-node pod's sandbox and containers (test infrastructure).

The node agent (testbed.pods) runs this file as root, as a script, in two ways:

- ``container.py pause NETNS HOSTNAME`` is the pod's sandbox: it joins the pod's network
  namespace, creates the pod's PID and UTS namespaces and forks their init (PID 1), which
  reaps orphans until it is killed. It prints that init's host PID. Killing the init kills
  every process of the pod that shares its PID namespace.
- ``container.py run SPEC.json`` is one container: it joins the sandbox's namespaces (and its
  PID namespace, or a fresh one of its own, as `shareProcessNamespace` says), forks the
  container's process into a private mount namespace whose root is the host's root or, for a
  built image (testbed.rootfs; the spec's `image`), an overlay over the image's tree with a
  tmpfs as its writable layer, /proc, a small /dev, the pod's hosts file (testbed.services)
  as /etc/hosts and the host's resolv.conf; then the pod's volumes are mounted at their
  paths, it drops to the requested uid/gid and execs the command. It stays as the
  container's parent, passes signals on, and exits with its status (128 + signal number when
  killed), so the agent sees a container exit as this process's. Without a sandbox
  (testbed.imagerun) it stays in the caller's namespaces, or joins only the spec's `netns`,
  and has a PID namespace of its own.

Standard library only, and single-threaded, which is what makes unshare/setns/fork safe.
Every process here dies with its parent (PR_SET_PDEATHSIG), so a killed agent leaves none.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
# Where a container's own additions to the root (mount points, overlays) live: the root's
# tmpfs, so nothing is ever created on the host's disk.
SCRATCH = "/.testbed"
EXEC_FAILED = 128
PRIVATE = {"tmp": "mode=1777", "run": "mode=0755"}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
FORWARDED = {
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def setns(path: str, nstype: int) -> None:
    """Move this process into the namespace at `path` (CLONE_NEWPID: its future children)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    """Create new namespaces for this process (CLONE_NEWPID: for its future children)."""
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    """mount(2); raises OSError naming the target."""
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def die_with_parent() -> None:
    """Be killed when the parent exits; exit now if it already has."""
    parent = os.getppid()
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if os.getppid() != parent:
        os._exit(1)


def pause(netns: str, hostname: str) -> None:
    """Become the pod's sandbox; prints the sandbox init's host PID, returns when it dies."""
    die_with_parent()
    setns(netns, CLONE_NEWNET)
    # Per-namespace settings a container runtime gives pods: binding to low ports without
    # root (containerd's default), and no IPv6, which the test bridge does not carry.
    for path, value in (
        ("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"),
        ("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"),
        ("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"),
    ):
        with contextlib.suppress(OSError), open(path, "w") as setting:
            setting.write(value)
    unshare(CLONE_NEWPID | CLONE_NEWUTS)
    socket.sethostname(hostname)
    init = os.fork()
    if init == 0:
        _init()
    print(init, flush=True)
    os.waitpid(init, 0)


def _init() -> None:
    """PID 1 of a pod: reap whatever is orphaned in the pod, forever."""
    die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    # Blocked, a SIGCHLD that comes while reaping waits for sigwait() instead of being lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    while True:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        signal.sigwait({signal.SIGCHLD})


def run(spec: dict[str, Any]) -> int:
    """Start the container that `spec` describes and return its exit status (see module doc)."""
    die_with_parent()
    state = Path(spec["state"])
    sandbox = spec.get("sandbox")
    if spec.get("netns"):
        setns(spec["netns"], CLONE_NEWNET)
    if sandbox:
        setns(f"/proc/{sandbox}/ns/uts", CLONE_NEWUTS)
    if sandbox and spec["sharePid"]:
        setns(f"/proc/{sandbox}/ns/pid", CLONE_NEWPID)
    else:
        unshare(CLONE_NEWPID)
    errors_in, errors_out = os.pipe()
    # Signals for the container wait (blocked) until the handler that passes them on is set.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        os.close(errors_in)
        try:
            _become_container(spec)
        except BaseException as error:  # reported to the agent through the pipe, then exit
            os.write(errors_out, f"{error}".encode()[:4000])
        os._exit(EXEC_FAILED)
    os.close(errors_out)

    def forward(number: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, number)

    for number in FORWARDED:
        signal.signal(number, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    # The pipe closes on a successful exec (close-on-exec) and carries the error otherwise.
    failure = b""
    while chunk := os.read(errors_in, 4096):
        failure += chunk
    if failure:
        (state / "error").write_bytes(failure)
    else:
        # The container has started: its command is running. The agent reports it so now.
        (state / "pid.new").write_text(str(child))
        (state / "pid.new").rename(state / "pid")
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _become_container(spec: dict[str, Any]) -> None:
    die_with_parent()
    os.setsid()
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    image = spec.get("image")
    # An image's /etc/hosts is the pod's (with its Services' names) or else the host's.
    files = {"/etc/hosts": spec.get("hosts") or "/etc/hosts", "/etc/resolv.conf": ""}
    volumes = [
        *({"source": s or t, "target": t, "readOnly": True} for t, s in files.items() if image),
        *spec["mounts"],
    ]
    # Open every volume now: after this namespace's root changes, a volume mounted at, say,
    # /tmp would hide the host directories that later volumes come from. (Opened before the
    # unshare, they would belong to the host's namespace, which bind mounts refuse.)
    sources = [os.open(m["source"], os.O_PATH) for m in volumes]
    root = _Root.image(spec["root"], image) if image else _Root.enter(spec["root"])
    for target, options in spec.get("tmpfs", []):
        root.mount_point(target, directory=True)
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)
        root.writable.append(os.path.realpath(target))
    kinds = [os.path.isdir(f"/proc/self/fd/{source}") for source in sources]
    # Every mount point first: an overlay made for one (say /etc/devspace/ca under the host's
    # /etc) would hide a file bound there before it (say the image's /etc/passwd).
    for volume, is_dir in zip(volumes, kinds, strict=True):
        root.mount_point(volume["target"], directory=is_dir)
    for source, volume, is_dir in zip(sources, volumes, kinds, strict=True):
        target = volume["target"]
        root.mount_point(target, directory=is_dir)
        mount(f"/proc/self/fd/{source}", target, None, MS_BIND | MS_REC)
        if volume["readOnly"]:
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        elif is_dir:
            root.writable.append(os.path.realpath(target))
        os.close(source)
    for path, mode, uid, gid in spec["directories"]:
        # The image's own directories (as its Dockerfile made them), unless a volume is there.
        if not os.path.lexists(path):
            root.mount_point(path, directory=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
    cwd = spec["cwd"] or "/"
    root.mount_point(cwd, directory=True)
    if spec["readOnlyRoot"]:
        root.make_read_only()
    os.umask(0o022)  # what container runtimes start a container's process with
    os.chdir(cwd)
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    if spec["noNewPrivs"]:
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
    die_with_parent()  # a change of uid clears it
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])  # noqa: S606 - the container's own command
    except FileNotFoundError:
        raise FileNotFoundError(f'exec: "{argv[0]}": executable file not found in $PATH') from None


class _Root:
    """A container's root, chrooted into: a tmpfs showing the host's top-level entries
    (enter()), or a built image's tree under a writable layer (image()).

    `host` are the directories bound from the host (paths inside the root), `private` the
    container's own tmpfs directories, `writable` the volumes and overlays that the container
    may create mount points in.
    """

    def __init__(self, host: list[str], private: list[str]) -> None:
        self.host = host
        self.private = private
        self.writable: list[str] = []
        self.overlays: list[str] = []

    @classmethod
    def enter(cls, root: str) -> _Root:
        """Build the root at `root`, with this pod's /proc, and chroot into it."""
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
        host, private = [], []
        for name in sorted(os.listdir("/")):
            source, target = f"/{name}", f"{root}/{name}"
            if name == "proc":
                os.mkdir(target)
            elif name in PRIVATE:
                # A container's /tmp and /run are its own, as an image's are: what one
                # container writes there (an sshd's host key copy, say) nobody else sees.
                os.mkdir(target)
                mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, PRIVATE[name])
                private.append(f"/{name}")
            elif os.path.islink(source):
                os.symlink(os.readlink(source), target)
            elif os.path.isdir(source):
                os.mkdir(target)
                mount(source, target, None, MS_BIND | MS_REC)
                host.append(f"/{name}")
            else:
                Path(target).touch()
                mount(source, target, None, MS_BIND)
                host.append(f"/{name}")
        # This process is in the pod's PID namespace, so this /proc shows the pod's processes.
        mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        os.chroot(root)
        os.chdir("/")
        os.makedirs(SCRATCH, mode=0o700)
        return cls(host, private)

    @classmethod
    def image(cls, root: str, rootfs: str) -> _Root:
        """Build an image's root at `root` (see module docstring) and chroot into it."""
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
        for name in ("upper", "work", "merged"):
            os.mkdir(f"{root}/{name}")
        merged = f"{root}/merged"
        # The image's tree is only ever the lower layer: the cache stays as it was built.
        layers = f"lowerdir={rootfs},upperdir={root}/upper,workdir={root}/work"
        mount("overlay", merged, "overlay", 0, layers)
        os.makedirs(f"{merged}/proc", exist_ok=True)
        mount("proc", f"{merged}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        dev = f"{merged}/dev"
        os.makedirs(dev, exist_ok=True)
        mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
        for name in DEVICES:
            Path(f"{dev}/{name}").touch()
            mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
        os.mkdir(f"{dev}/pts")
        # containerd's options: a terminal belongs to group tty (5) at 0620 from the start, so
        # a non-root sshd (the sidecar) need not chown it, which it could not do.
        options = "newinstance,ptmxmode=0666,mode=0620,gid=5"
        mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, options)
        os.mkdir(f"{dev}/shm")
        mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")
        links = {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0"}
        links |= {"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
        for name, target in links.items():
            os.symlink(target, f"{dev}/{name}")
        os.chroot(merged)
        os.chdir("/")
        # Nothing here is the host's: mount points are made in the writable layer.
        return cls([], [])

    def mount_point(self, path: str, *, directory: bool) -> None:
        """Make `path` exist inside the root without writing to the host's disk.

        Where the deepest existing ancestor is the root's tmpfs, a private directory, a
        volume or an overlay made here, the path is simply created, as a runtime would. Inside
        a directory bound from the host (say /etc/devspace/ca under /etc) that ancestor first
        gets an overlay whose upper layer is in the root's tmpfs: the host's stays as it was.
        """
        if os.path.lexists(path):
            return
        ancestor = os.path.dirname(path)
        while not os.path.isdir(ancestor):
            ancestor = os.path.dirname(ancestor)
        ancestor = os.path.realpath(ancestor)
        if _under(ancestor, self.host) and not _under(ancestor, self.writable + self.overlays):
            layer = f"{SCRATCH}/overlay{len(self.overlays)}"
            os.makedirs(f"{layer}/upper")
            os.makedirs(f"{layer}/work")
            options = f"lowerdir={ancestor},upperdir={layer}/upper,workdir={layer}/work"
            mount("overlay", ancestor, "overlay", 0, options)
            self.overlays.append(ancestor)
        if directory:
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Path(path).touch()

    def make_read_only(self) -> None:
        """readOnlyRootFilesystem: all but the volumes becomes read-only."""
        for target in self.host + self.private + self.overlays:
            with contextlib.suppress(OSError):
                mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def exec_command(state: Path, argv: list[str]) -> list[str]:
    """The command line that runs `argv` inside a running container, as `kubectl exec` would.

    It joins the container's namespaces, root and working directory, takes on its user,
    groups and environment. `state` is the container's attempt directory (spec.json, pid).
    Raises FileNotFoundError or ValueError when the container has not started.
    """
    spec = json.loads((state / "spec.json").read_text())
    pid = int((state / "pid").read_text())
    identity = [
        f"--reuid={spec['uid']}",
        f"--regid={spec['gid']}",
        f"--groups={','.join(str(g) for g in spec['groups'])}",
        *(["--no-new-privs"] if spec["noNewPrivs"] else []),
    ]
    env = [f"{key}={value}" for key, value in spec["env"].items()]
    return [
        "nsenter",
        f"--target={pid}",
        "--net",
        "--uts",
        "--pid",
        "--mount",
        "--root",
        "--wd",
        "--",
        "setpriv",
        *identity,
        "--",
        "env",
        "-i",
        *env,
        *argv,
    ]


def main(argv: list[str]) -> int:
    """Entry point: `pause NETNS HOSTNAME` or `run SPEC.json`; returns the exit status."""
    if argv[:1] == ["pause"] and len(argv) == 3:
        pause(argv[1], argv[2])
        return 0
    if argv[:1] == ["run"] and len(argv) == 2:
        return run(json.loads(Path(argv[1]).read_text()))
    print("usage: container.py pause NETNS HOSTNAME | run SPEC.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
