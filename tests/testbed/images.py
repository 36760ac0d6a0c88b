"""The test node's image table (test infrastructure): which local command "is" an image.

There is no container runtime here, so an image is not pulled; it is looked up in this table,
which says what its entrypoint, default command, working directory, user and environment are,
as the image's own config would. Test images' containers see the host's filesystem (see
testbed.container), plus any files an image row binds into them.

Our own two images (`ghcr.io/devspace/server` and `ghcr.io/devspace/sshd`, any tag or digest)
are trees testbed.rootfs built from their Dockerfiles, run with the config the Dockerfiles
recorded. The node never builds one (minutes, cold) inside a pod start: it runs the build a
test loaded into it (TestNode.load_image, as `kind load` does), else the cached build of the
checkout as it is now (`rootfs.build`, tests/testbed/build-images). Loading pins the build:
an edit to the sources in the middle of a test run does not change what pods run. An image
missing from the table or not built fails the way an unpullable image does on a real node:
ErrImagePull, then ImagePullBackOff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from testbed import rootfs
from testbed.dockerfile import UnsupportedInstruction

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
    sees is the host's, except its own /tmp and /run. With `rootfs` (a built image's tree)
    the container sees that tree instead, and nothing of the host's but /etc/hosts and
    resolv.conf. `unavailable`, when set, makes the image fail to "pull" with that message.
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
    rootfs: Path | None = None


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


def built(name: str, dockerfile: Path, loaded: Path | None = None) -> Image:
    """Image `name` as loaded into the node (a link in the directory `loaded`), else as
    testbed.rootfs built it from `dockerfile` for the checkout as it is now, with its recorded
    config; an unavailable Image when it is neither."""
    path = loaded / name if loaded else None
    if path is None or not (path / "config.json").exists():
        try:
            path = rootfs.cache_root() / f"{name}-{rootfs.image_key(dockerfile)}"
        except (OSError, rootfs.BuildError, UnsupportedInstruction) as error:
            return Image(unavailable=f"cannot read the build context of {dockerfile}: {error}")
    if not (path / "config.json").exists():
        return Image(
            unavailable=f"the {name} image is neither loaded into the test node "
            "(TestNode.load_image) nor built for this checkout (testbed.rootfs.build, or "
            f"tests/testbed/build-images; not in {rootfs.cache_root()})"
        )
    image = rootfs.Image(path.resolve())
    config = image.config
    uid, gid = _user(image.rootfs, str(config.get("user") or "0"))
    return Image(
        entrypoint=tuple(cast(list[str], config.get("entrypoint") or [])),
        cmd=tuple(cast(list[str], config.get("cmd") or [])),
        working_dir=str(config.get("workdir") or "/"),
        user=uid,
        group=gid,
        env=dict(cast(dict[str, str], config.get("env") or {})),
        rootfs=image.rootfs,
    )


def _user(tree: Path, user: str) -> tuple[int, int]:
    """USER `name|uid[:group|gid]` as uid and gid, looked up in the image's own files, as
    container runtimes do (a number needs no entry)."""
    name, _, group = user.partition(":")

    def lookup(file: str, key: str) -> list[str] | None:
        entries = [line.split(":") for line in (tree / file).read_text().splitlines()]
        return next((e for e in entries if key in (e[0], e[2])), None)

    entry = lookup("etc/passwd", name)
    uid = int(entry[2]) if entry else int(name)
    if not group:
        return uid, int(entry[3]) if entry else 0
    found = lookup("etc/group", group)
    return uid, int(found[2]) if found else int(group)


# Keyed by repository, without registry defaults, tag or digest (see repository()).
IMAGES: dict[str, Callable[[Mapping[str, Any]], Image]] = {
    "devspace.test/http-server": _http_server,
    "devspace.test/shell": _shell,
    "debian": _shell,
    "devspace.test/sshd": _sshd,
}
# Ours, by the chart's names (helm/devspace/values.yaml: image, sshdImage): built trees.
BUILT = {
    "ghcr.io/devspace/server": ("server", REPOSITORY / "Dockerfile"),
    "ghcr.io/devspace/sshd": ("sshd", REPOSITORY / "sshd-image/Dockerfile"),
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


def resolve(container: Mapping[str, Any], loaded: Path | None = None) -> Image | None:
    """The Image for a pod's container spec, or None when the image is unknown; `loaded` is
    the node's directory of loaded builds (see built())."""
    name = repository(container.get("image", ""))
    if name in BUILT:
        return built(*BUILT[name], loaded)
    row = IMAGES.get(name)
    return row(container) if row is not None else None
