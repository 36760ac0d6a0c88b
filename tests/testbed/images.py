"""The test node's image table (test infrastructure): which local command "is" an image.

There is no container runtime here, so an image is not pulled; it is looked up in this table,
which says what its entrypoint, default command, working directory, user and environment are,
as the image's own config would. Containers see the host's filesystem (see testbed.container),
plus any files an image row binds into them. An image missing from the table fails the way an
unpullable image does on a real node: ErrImagePull, then ImagePullBackOff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
# Debian's interpreter, not the virtualenv's: containers often run as users that cannot
# read /root, where the virtualenv's interpreter lives.
PYTHON = "/usr/bin/python3"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# A well-behaved server image: it exits on SIGTERM, so pods stop at once rather than at
# the end of their grace period (as a Python PID 1 without a handler would).
_HTTP_SERVER = """\
import runpy, signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sys.argv = ["http.server", *sys.argv[1:]]
runpy.run_module("http.server", run_name="__main__", alter_sys=True)
"""


@dataclass(frozen=True)
class Image:
    """What an image's config says: entrypoint, default command (CMD), workdir, user, env.

    `files` maps paths inside the container to host files or directories bound there
    read-only, standing in for the image's own files; `directories` are made in the container
    (path: mode, uid, gid), as the image's Dockerfile made them. Everything else a container
    sees is the host's, except its own /tmp and /run. `unavailable`, when set, makes the image
    fail to "pull" with that message.
    """

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = "/"
    user: int = 0
    group: int = 0
    env: Mapping[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    files: Mapping[str, Path] = field(default_factory=dict)
    directories: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    unavailable: str | None = None


def _http_server(container: Mapping[str, Any]) -> Image:
    ports = container.get("ports") or []
    port = ports[0]["containerPort"] if ports else 8080
    return Image(entrypoint=(PYTHON, "-c", _HTTP_SERVER), cmd=(str(port),))


def _shell(_container: Mapping[str, Any]) -> Image:
    return Image(cmd=("/bin/bash",))


def _sshd(_container: Mapping[str, Any]) -> Image:
    # Debian's real sshd with the entrypoint, configuration and scripts from sshd-image/,
    # bound where its Dockerfile copies them, and the image's own users (`dev`, 1000, for the
    # sidecar; `devspace`, 10001, for the gateway), which this machine does not have.
    image_files = REPOSITORY / "tests/testbed/images"
    return Image(
        entrypoint=("/usr/local/bin/devspace-sshd",),
        cmd=("sidecar",),
        user=1000,
        group=1000,
        files={
            "/usr/local/bin/devspace-sshd": REPOSITORY / "sshd-image/entrypoint",
            "/usr/local/bin/devspace-gateway-principals": REPOSITORY
            / "sshd-image/gateway/principals",
            "/etc/devspace/sshd/sidecar.conf": REPOSITORY / "sshd-image/sidecar/sshd_config",
            "/etc/devspace/sshd/gateway.conf": REPOSITORY / "sshd-image/gateway/sshd_config",
            "/etc/passwd": image_files / "sshd-passwd",
            "/etc/group": image_files / "sshd-group",
        },
        directories={"/run/devspace-sshd": (0o1777, 0, 0), "/workspace": (0o755, 1000, 1000)},
    )


# Keyed by repository, without registry defaults, tag or digest (see repository()).
IMAGES: dict[str, Callable[[Mapping[str, Any]], Image]] = {
    "devspace.test/http-server": _http_server,
    "devspace.test/shell": _shell,
    "debian": _shell,
    "devspace.test/sshd": _sshd,
}


def repository(image: str) -> str:
    """`docker.io/library/debian:bookworm-slim@sha256:…` → `debian`: the table's key."""
    name = image.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    for default in ("docker.io/library/", "docker.io/", "library/"):
        if name.startswith(default):
            return name[len(default) :]
    return name


def resolve(container: Mapping[str, Any]) -> Image | None:
    """The table's Image for a pod's container spec, or None when the image is unknown."""
    row = IMAGES.get(repository(container.get("image", "")))
    return row(container) if row is not None else None
