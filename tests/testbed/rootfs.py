"""Root filesystems of our two container images, built without Docker (test bed; as root).

There is no Docker engine here, but Debian's package mirror is reachable, so each image's
Dockerfile is interpreted (testbed.dockerfile parses it) into a directory tree:

- `FROM debian:12.N-slim` is `debootstrap --variant=minbase bookworm`, from the mirror apt
  uses here (read from /etc/apt/sources.list*), then upgraded from bookworm-updates and
  bookworm-security as the published image is, with the slim images' dpkg excludes.
- `FROM python:3.11.N-slim-bookworm` is a STAND-IN: the same base plus Debian's python3,
  python3-venv and python-is-python3, i.e. Debian's Python 3.11.2 under /usr/bin instead of
  the python image's own build (3.11.N under /usr/local/bin).
- RUN runs `/bin/sh -c` chrooted into the tree, in private mount and PID namespaces with
  /proc, /dev and the host's resolv.conf and hosts bound in (gone when it ends), and a
  policy-rc.d that stops package scripts from starting daemons on the host.
- COPY (also --chmod and --from=stage) copies from the build context, honouring
  .dockerignore, as root:root. ENV, USER, WORKDIR, EXPOSE, ENTRYPOINT and CMD are recorded in
  `config.json` beside the tree, as an image's config is.

Images are cached under ~/.cache/devspace-testbed/images (DEVSPACE_TESTBED_CACHE), keyed by
the Dockerfile, every file its COPY instructions send and this code, so a second build of an
unchanged image costs one hash of the context. `python3 -m testbed.rootfs NAME=DOCKERFILE...`
(tests/testbed/build-images) builds and prints each image's directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed import dockerfile
from testbed.dockerfile import Instruction, UnsupportedInstruction

SUITE = "bookworm"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Base:
    """A stand-in base image: packages on top of minbase, and the config the image carries."""

    packages: tuple[str, ...]
    env: dict[str, str]
    cmd: list[str]


# What the official images' own configs carry, which the stages inherit.
BASES = {
    "debian": Base((), {"PATH": DEFAULT_PATH}, ["bash"]),
    "python": Base(
        ("python3", "python3-venv", "python-is-python3"),
        {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"},
        ["python3"],
    ),
}
_BASE_IMAGE = {
    "debian": re.compile(r"debian:12(\.\d+)?-slim"),
    "python": re.compile(r"python:3\.11(\.\d+)?-slim-bookworm"),
}
# The slim images' /etc/dpkg/dpkg.cfg.d/docker: no documentation, manuals or translations.
SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
HERE = Path(__file__).resolve().parent
HOST_TRUST = "/etc/ssl/certs/ca-certificates.crt"
BUILD_TRUST = "/run/devspace-build/ca-certificates.crt"
TRUST_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# Part of the base trees' cache key: change it when base_rootfs() makes them differently.
BASE_RECIPE = "1"


class BuildError(RuntimeError):
    """A step of an image build failed; the message names it."""


def cache_root() -> Path:
    default = Path.home() / ".cache/devspace-testbed"
    return Path(os.environ.get("DEVSPACE_TESTBED_CACHE", default)) / "images"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One build at a time per cache (two test runs may ask for the same image at once)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def mirror_sources() -> str:
    """The deb822 sources of the Debian suites apt uses here (bookworm, -updates, -security)."""
    entries: list[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[0] != "#"
            )
            suites = fields.get("Suites", "").split()
            if fields.get("Types", "").strip() == "deb" and any(
                s.startswith(SUITE) for s in suites
            ):
                entries.append(
                    "\n".join(
                        line for line in stanza.splitlines() if line and not line.startswith("#")
                    )
                )
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            words = line.split()
            if len(words) >= 4 and words[0] == "deb" and words[2].startswith(SUITE):
                uri, suite, components = words[1], words[2], " ".join(words[3:])
                entries.append(
                    f"Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: {components}"
                )
    if not entries:
        raise BuildError(f"no Debian {SUITE} source in /etc/apt/sources.list*")
    return "\n\n".join(entries) + "\n"


def mirror_uri(sources: str) -> str:
    """The URI of the stanza that carries the plain suite (debootstrap's mirror)."""
    for stanza in sources.split("\n\n"):
        fields = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in stanza.splitlines())}
        if SUITE in fields.get("Suites", "").split():
            return fields["URIs"].split()[0]
    raise BuildError(f"no mirror carries {SUITE}")


def run_checked(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-4000:]
        raise BuildError(f"{what} failed (exit {done.returncode}):\n{tail}")


def _deny_services() -> Path:
    """A policy-rc.d answering "action forbidden" (101, see policy-rc.d(8)) for every service."""
    deny = cache_root() / "policy-rc.d"
    if not deny.exists():
        deny.parent.mkdir(parents=True, exist_ok=True)
        deny.write_text("#!/bin/sh\nexit 101\n")
        deny.chmod(0o755)
    return deny


def chroot_sh(root: Path, script: str, env: dict[str, str], workdir: str = "/") -> None:
    """`/bin/sh -c script` chrooted into `root`, as a Dockerfile's RUN (see module docstring).

    Raises BuildError with the end of its output when it fails.
    """
    # Bound in for this command only (the mounts die with its mount namespace). Docker binds
    # resolv.conf and hosts too; their empty mount points stay, as in an image.
    binds = {
        "/etc/resolv.conf": Path("/etc/resolv.conf"),
        "/etc/hosts": Path("/etc/hosts"),
        "/usr/sbin/policy-rc.d": _deny_services(),
    }
    variables = {"HOME": "/root", **env}
    # The builder's own TLS trust, for RUNs that download over HTTPS (pip): this machine's
    # egress presents its own CA. Like Docker's predefined proxy build arguments, it is in
    # the build's environment only, never in the image.
    if Path(HOST_TRUST).exists():
        binds[BUILD_TRUST] = Path(HOST_TRUST)
        variables.update(dict.fromkeys(TRUST_VARIABLES, BUILD_TRUST))
    made: list[Path] = []
    for inside in binds:
        target = root / inside.lstrip("/")
        if target.is_symlink():
            target.unlink()
        if not target.exists():
            if not target.parent.exists():
                target.parent.mkdir(parents=True)
                made.append(target.parent)
            target.touch()
            if inside not in ("/etc/resolv.conf", "/etc/hosts"):
                made.insert(0, target)
    setup = 'set -e; r="$1"; shift\n'
    setup += 'mount --rbind /dev "$r/dev"; mount -t tmpfs -o mode=1777 shm "$r/dev/shm"\n'
    setup += 'mount -t proc proc "$r/proc"\n'
    setup += "".join(f'mount --bind {source} "$r{inside}"\n' for inside, source in binds.items())
    setup += 'exec chroot "$r" "$@"\n'
    argv = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation=private"]
    argv += ["/bin/sh", "-c", setup, "sh", str(root), "/usr/bin/env", "-i", "-C", workdir]
    argv += [f"{k}={v}" for k, v in variables.items()] + ["/bin/sh", "-c", script]
    started = time.monotonic()
    print(f"  RUN {script[:100]}", file=sys.stderr, flush=True)
    try:
        run_checked(argv, f"RUN {script[:200]}")
    finally:
        for path in made:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
    print(f"    ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)


def base_rootfs(kind: str) -> Path:
    """The cached tree of a base image (see BASES), made once per mirror and package list.

    The python stand-in is the debian one plus its packages, so one debootstrap serves both.
    """
    sources = mirror_sources()
    packages = BASES[kind].packages
    key = _digest([sources, SLIM_DPKG, " ".join(packages), BASE_RECIPE])
    out = cache_root() / f"base-{kind}-{SUITE}-{key}"
    if (out / "etc/debian_version").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    apt = "export DEBIAN_FRONTEND=noninteractive && apt-get update -qq && "
    clean = "apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log"
    if packages:
        run_checked(
            ["cp", "-a", "--reflink=auto", str(base_rootfs("debian")), str(tmp)], "copy base"
        )
        install = f"apt-get install -y -qq --no-install-recommends {' '.join(packages)} && "
        chroot_sh(tmp, apt + install + clean, {"PATH": DEFAULT_PATH})
    else:
        print(f"debootstrap {SUITE} (minbase)", file=sys.stderr, flush=True)
        run_checked(
            ["debootstrap", "--variant=minbase", SUITE, str(tmp), mirror_uri(sources)],
            "debootstrap",
        )
        (tmp / "etc/apt/sources.list").unlink(missing_ok=True)
        (tmp / "etc/apt/sources.list.d/debian.sources").write_text(sources)
        (tmp / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG)
        # The published image is the point release plus the updates and security suites.
        chroot_sh(tmp, apt + "apt-get upgrade -y -qq && " + clean, {"PATH": DEFAULT_PATH})
        (tmp / "etc/resolv.conf").write_text("")
    tmp.rename(out)
    print(f"  base {kind}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return out


def _digest(parts: list[str | bytes]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big") + data)
    return hasher.hexdigest()[:12]


def context_files(context: Path, source: str, ignore: dockerfile.Ignore) -> list[Path]:
    """The files and directories a COPY source sends, in order (directories before contents)."""
    top = (context / source).resolve()
    if not top.is_relative_to(context) or not top.exists():
        raise BuildError(f"COPY {source}: not in the build context {context}")
    found = [top]
    if top.is_dir():
        found += sorted(top.rglob("*"))
    return [p for p in found if not ignore.excludes(p.relative_to(context).as_posix())]


def image_key(path: Path) -> str:
    """The cache key: the Dockerfile, what its COPY instructions send, and this builder."""
    context = path.parent.resolve()
    ignore = dockerfile.Ignore(context)
    parts: list[str | bytes] = [path.read_bytes()]
    for name in ("rootfs.py", "imagebuild.py", "dockerfile.py"):
        parts.append((HERE / name).read_bytes())
    for stage in dockerfile.parse(path.read_text()):
        for step in stage.instructions:
            if step.keyword == "COPY" and "from" not in step.flags:
                for source in dockerfile.copy_arguments(step)[0]:
                    for file in context_files(context, source, ignore):
                        rel = file.relative_to(context).as_posix()
                        parts += [rel, oct(file.stat().st_mode)]
                        if file.is_file():
                            parts.append(file.read_bytes())
    return _digest(parts)


@dataclass(frozen=True)
class Image:
    """A built image: its root filesystem and its config (env, user, workdir, command)."""

    path: Path

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def config(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.path / "config.json").read_text())
        return loaded


def build(path: Path, name: str) -> Image:
    """The image that Dockerfile `path` describes, from the cache or built now.

    Raises UnsupportedInstruction for a Dockerfile this builder cannot interpret, BuildError
    when a step fails.
    """
    out = cache_root() / f"{name}-{image_key(path)}"
    with _locked(cache_root()):
        if (out / "config.json").exists():
            return Image(out)
        from testbed.imagebuild import build_stages  # noqa: PLC0415 - only when building

        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        started = time.monotonic()
        config = build_stages(path, tmp)
        config["build_seconds"] = round(time.monotonic() - started)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for stale in cache_root().glob(f"{name}-*"):
            if stale != tmp:
                shutil.rmtree(stale, ignore_errors=True)
        tmp.rename(out)
        return Image(out)


def base_kind(image: str, line: int) -> str:
    """Which of BASES stands in for the FROM image `image`."""
    for kind, pattern in _BASE_IMAGE.items():
        if pattern.fullmatch(image.split("@", 1)[0]):
            return kind
    raise UnsupportedInstruction(f"line {line}: no stand-in for FROM {image}")


def main(argv: list[str]) -> int:
    """`python3 -m testbed.rootfs NAME=DOCKERFILE...`: build each, print NAME=DIRECTORY."""
    for pair in argv:
        name, _, file = pair.partition("=")
        try:
            image = build(Path(file).resolve(), name)
        except (BuildError, UnsupportedInstruction) as error:
            print(f"build-images: {name}: {error}", file=sys.stderr)
            return 1
        print(f"{name}={image.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["BuildError", "Image", "Instruction", "build", "chroot_sh"]
