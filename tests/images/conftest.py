"""Fixtures for the image tests: the two images built from their Dockerfiles without Docker
(testbed.rootfs; debootstrap from Debian's mirror, cached), run as containers would run them
(testbed.imagerun), as root.

- ``server_image``, ``sshd_image``: the built images (``rootfs.Image``: ``.rootfs`` and
  ``.config``, the ENV/USER/WORKDIR/ENTRYPOINT/CMD their Dockerfiles recorded).
- ``netns``: a fresh network namespace with only a loopback, deleted afterwards, so the
  images listen on their own ports (2222, 8080) as they do in a pod.

Helpers: ``container(image, tmp, ...)`` fills in an ``imagerun.Container`` from the image's
config; ``in_netns(netns, fn)`` calls ``fn`` in a thread that has joined the namespace (its
sockets stay there); ``wait_for_port(netns, port)`` waits for a listener and returns the
seconds it took.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from testbed import imagerun, rootfs
from testbed.container import CLONE_NEWNET, setns

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@pytest.fixture(scope="session")
def server_image() -> rootfs.Image:
    return rootfs.build(ROOT / "Dockerfile", "server")


@pytest.fixture(scope="session")
def sshd_image() -> rootfs.Image:
    return rootfs.build(ROOT / "sshd-image/Dockerfile", "sshd")


@pytest.fixture
def netns() -> Iterator[Path]:
    name = f"devspace-img-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield Path("/run/netns") / name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def in_netns(netns: Path, fn: Callable[[], T]) -> T:
    """`fn()` run in a thread that joined `netns` (setns of a thread moves only it)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            setns(str(netns), CLONE_NEWNET)
            result.append(fn())
        except BaseException as error:  # re-raised in the caller
            errors.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def wait_for_port(
    netns: Path, port: int, process: subprocess.Popen[bytes], timeout: float = 20
) -> float:
    """Seconds until something accepts on 127.0.0.1:`port` in `netns` (and, for SSH, has
    sent its banner). Raises AssertionError if `process` exits or the time runs out."""
    started = time.monotonic()

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                return port != 2222 or connection.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    while not in_netns(netns, ready):
        assert process.poll() is None, f"the container exited with {process.returncode}"
        assert time.monotonic() - started < timeout, f"nothing listens on {port}"
        time.sleep(0.02)
    return time.monotonic() - started


def image_identity(image: rootfs.Image) -> tuple[int, int]:
    """The uid and gid of the image's USER, looked up in its own /etc/passwd as Docker does."""
    user, _, group = str(image.config["user"] or "0").partition(":")
    passwd = [line.split(":") for line in (image.rootfs / "etc/passwd").read_text().splitlines()]
    entry = next((e for e in passwd if user in (e[0], e[2])), None)
    uid = int(entry[2]) if entry else int(user)
    gid = int(group) if group else int(entry[3]) if entry else 0
    return uid, gid


def container(
    image: rootfs.Image,
    tmp: Path,
    name: str,
    *,
    args: Sequence[str] | None = None,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
    fs_group: int | None = None,
    **options: Any,
) -> imagerun.Container:
    """A Container of `image` with its recorded entrypoint, command, env, user and workdir.

    `args` replaces CMD (a pod's `args`), `argv` both (a pod's `command`); `uid` is a pod's
    runAsUser (with runAsGroup the same), `fs_group` its fsGroup (a supplementary group).
    """
    config = image.config
    image_uid, image_gid = image_identity(image)
    entrypoint = list(config["entrypoint"])  # type: ignore[call-overload]
    command = list(args if args is not None else config["cmd"])  # type: ignore[call-overload]
    return imagerun.Container(
        rootfs=image.rootfs,
        scratch=tmp / f"{name}.layer",
        argv=list(argv) if argv is not None else entrypoint + command,
        env={**config["env"], **(env or {})},  # type: ignore[dict-item]
        uid=uid if uid is not None else image_uid,
        gid=uid if uid is not None else image_gid,
        groups=[fs_group] if fs_group is not None else [],
        workdir=str(config["workdir"]),
        log=tmp / f"{name}.log",
        **options,
    )


def secret_file(path: Path, content: bytes | str, group: int, mode: int = 0o440) -> Path:
    """A file as a Secret volume presents it: root-owned, group `group` (fsGroup), `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.chown(path, 0, group)
    path.chmod(mode)
    return path
