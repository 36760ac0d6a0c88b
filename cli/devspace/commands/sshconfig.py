"""`devspace ssh-config [--write]`: OpenSSH client configuration for every space, so plain
`ssh`, `scp`, `sftp`, VS Code Remote-SSH and JetBrains Gateway reach them.

Layout (with `--write`), per server:

- `~/.ssh/devspace/<server>.conf`: one `Host devspace-NAME` block per space, with
  `devspace proxy NAME` as ProxyCommand (the gateway hop, pinned: the proxy becomes OpenSSH's
  `ssh -W`, or relays with paramiko), the CLI's own key and certificate, and
  `StrictHostKeyChecking yes` against
- `~/.ssh/devspace/<server>.known_hosts`: each sidecar's published host key, under the
  alias `devspace-NAME` (`HostKeyAlias`), so a pod's changing IP does not matter.
- `~/.ssh/config` gets one line, `Include ~/.ssh/devspace/*.conf`, at its top.

Two servers may both have a space called NAME. OpenSSH would silently take the first file's
`Host devspace-NAME`, so a name another server's file already has becomes
`devspace-NAME.<server's host>` here, and the command says so. (Each server has its own
known_hosts file, so the key alias stays `devspace-NAME`.)

Why an included file rather than a marked block in ~/.ssh/config: the generated part can be
rewritten whole, every time, without parsing or ever touching a line the person wrote, and
deleting it is deleting a file. Why at the top: OpenSSH takes the first value it finds for
each option, so a `Host *` of the person's own above it would override the pins.

Certificates: OpenSSH reads the certificate file before the ProxyCommand has run, so the
proxy cannot renew it in time for that very connection. A `Match … exec` line renews it
during the configuration pass instead (`devspace proxy --certificate-only`); it does
nothing when the certificate is still good for a while.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from devspace.commands.common import server_option, which_server
from devspace.config import write_atomically
from devspace.credentials import server_slug
from devspace.output import progress

HOST_PREFIX = "devspace-"
INCLUDE_MARK = "# devspace: the spaces' SSH hosts (`devspace ssh-config --write`)"


def alias(space: str) -> str:
    """The `Host` name (and host key alias) of `space`."""
    return f"{HOST_PREFIX}{space}"


def files(ssh_dir: Path, server: str) -> tuple[Path, Path]:
    """(config file, known_hosts file) that `--write` makes for `server` under `ssh_dir`."""
    directory = ssh_dir / "devspace"
    slug = server_slug(server)
    return directory / f"{slug}.conf", directory / f"{slug}.known_hosts"


def devspace_command() -> list[str]:
    """How OpenSSH starts this same CLI: this interpreter running the `devspace` package."""
    return [sys.executable, "-m", "devspace"]


def _quoted(word: str) -> str:
    # ssh_config splits on blanks and honours double quotes; `%` starts a token there.
    word = word.replace("%", "%%")
    return f'"{word}"' if any(c in word for c in " \t") else word


def _command_line(words: Sequence[str]) -> str:
    # OpenSSH hands ProxyCommand and `exec` to the shell (`sh -c` on POSIX; on Windows, a
    # command line as CreateProcess parses it).
    if sys.platform == "win32":
        line = subprocess.list2cmdline(words)
    else:
        line = shlex.join(words)  # single quotes only: safe inside the `exec "…"` below
    return line.replace("%", "%%")


def known_hosts_line(space: str, public_key: str) -> str:
    """The known_hosts line pinning `space`'s published sidecar key."""
    key_type, blob = public_key.split()[:2]
    return f"{alias(space)} {key_type} {blob}\n"


def host_names(server: str, spaces: Sequence[str], taken: Collection[str]) -> dict[str, str]:
    """Each space's `Host` name: its alias, or, when another server's file has that name
    (`taken`), the alias qualified by `server`'s host (and port)."""
    qualifier = (urlsplit(server).netloc or server).replace(":", "-")
    return {
        name: f"{alias(name)}.{qualifier}" if alias(name) in taken else alias(name)
        for name in spaces
    }


def taken_elsewhere(own: Path) -> set[str]:
    """The `Host` names that the other servers' files beside `own` define."""
    names: set[str] = set()
    for path in own.parent.glob("*.conf"):
        if path == own:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # not ours to judge: OpenSSH will say what is wrong with it
        for line in text.splitlines():
            words = line.split()
            if len(words) > 1 and words[0].lower() == "host":
                names.update(words[1:])
    return names


def render(
    server: str,
    spaces: Sequence[dict[str, Any]],
    known_hosts: Path,
    ssh_dir: Path | None = None,
    taken: Collection[str] = (),
) -> str:
    """The configuration text for `server`'s `spaces` (as the API lists them); `ssh_dir` is
    passed on to the proxy when it is not the default; `taken`: other servers' `Host` names."""
    from devspace.certificates import key_directory  # noqa: PLC0415

    keys = key_directory(server)
    cli = devspace_command()
    where = ["--ssh-dir", str(ssh_dir)] if ssh_dir is not None else []
    hosts = host_names(server, [str(s["name"]) for s in spaces], taken)
    lines = [
        f"# Written by `devspace ssh-config --write` for {server}; it rewrites this file.",
        "",
    ]
    for name, host in hosts.items():
        proxy = _command_line([*cli, "proxy", "--server", server, *where, name])
        lines += [
            f"Host {host}",
            f"  HostName {name}",
            "  User dev",
            f"  ProxyCommand {proxy}",
            f"  IdentityFile {_quoted(str(keys / 'id_ed25519'))}",
            f"  CertificateFile {_quoted(str(keys / 'id_ed25519-cert.pub'))}",
            "  IdentitiesOnly yes",
            f"  HostKeyAlias {alias(name)}",
            f"  UserKnownHostsFile {_quoted(str(known_hosts))}",
            "  StrictHostKeyChecking yes",
            "  ServerAliveInterval 15",
            "  ServerAliveCountMax 3",
            "  ForwardAgent no",
            "",
        ]
    if hosts:
        renew = _command_line([*cli, "proxy", "--server", server, "--certificate-only"])
        lines += [
            "# Renews the certificate before OpenSSH reads it; sets nothing.",
            f'Match originalhost {",".join(hosts.values())} exec "{renew}"',
            "",
        ]
    return "\n".join(lines)


def include(config: Path, pattern: Path) -> bool:
    """Put `Include pattern` at the top of `config` unless it is there; True if added."""
    line = f"Include {_quoted(str(pattern))}"
    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    if line in text.splitlines():
        return False
    write_atomically(config, f"{INCLUDE_MARK}\n{line}\n\n{text}".encode())
    return True


@click.command("ssh-config")
@click.option("--write", is_flag=True, help="Write the files and the Include (else: print).")
@click.option(
    "--ssh-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="OpenSSH's user directory (default: ~/.ssh).",
)
@server_option
def ssh_config(write: bool, ssh_dir: Path | None, server: str | None) -> None:
    """OpenSSH configuration for your spaces, as hosts `devspace-NAME`
    (`devspace-NAME.HOST` when another server's spaces already have that name).

    Prints it; with --write, keeps it in ~/.ssh/devspace/ and includes it from the top of
    ~/.ssh/config (once), so that `ssh devspace-NAME`, `scp`, VS Code Remote-SSH and JetBrains
    Gateway work with your certificate and each space's pinned host key. Run it again after
    creating or re-creating a space.
    """
    from devspace.api import Api  # noqa: PLC0415 - requests is slow to import
    from devspace.certificates import ensure_identity  # noqa: PLC0415

    url = which_server(server)
    api = Api(url)
    given_dir = ssh_dir
    ssh_dir = ssh_dir or Path.home() / ".ssh"
    config_file, known_hosts = files(ssh_dir, url)
    spaces = [s for s in api.call("GET", "/spaces")["items"] if s.get("host_key")]
    taken = taken_elsewhere(config_file)
    text = render(url, spaces, known_hosts, given_dir, taken)
    if not write:
        click.echo(text)
        progress(f"(printed only: `--write` keeps it in {config_file} with its known hosts)")
        return
    ensure_identity(api)  # so the key and certificate the files name exist now
    pins = "".join(
        known_hosts_line(str(s["name"]), str(s["host_key"]["public_key"]))
        for s in spaces
        if s["host_key"].get("public_key")
    )
    write_atomically(known_hosts, pins.encode())
    write_atomically(config_file, text.encode())
    if os.name == "posix":
        ssh_dir.chmod(ssh_dir.stat().st_mode & 0o755)  # ssh refuses group-writable dirs
    added = include(ssh_dir / "config", config_file.parent / "*.conf")
    hosts = host_names(url, [str(s["name"]) for s in spaces], taken)
    progress(
        f"Wrote {config_file} (hosts: {', '.join(hosts.values()) or 'none yet'})"
        + (f" and included it from {ssh_dir / 'config'}." if added else ".")
    )
    for name, host in hosts.items():
        if host != alias(name):
            progress(f"Space {name} is {host}: another server's file already has {alias(name)}.")
