"""The gateway hop made by this computer's OpenSSH client (`ssh -W`), with paramiko as fallback.

Why: with paramiko on both hops every byte is framed, encrypted and windowed twice in one
interpreter, under one GIL — 0.42x the throughput of `ssh -J` (BENCHMARKS.md). `ssh -W
sidecar:2222 gateway` is what `ssh -J` itself runs for the outer hop; in its own process it
leaves paramiko only the inner hop, spoken over the process's stdin and stdout (a socket pair,
or pipes on Windows, where a socket cannot be a child's standard handle).

The process is strict: no configuration files (`-F none`), the devspace key and certificate
only, no agent, no prompts, and a known_hosts file of its own holding only the gateway's
published key, checked strictly. When it fails, its stderr says why, and `diagnose` turns that
into the errors the paramiko hop raises (`HostKeyMismatch`, `CertificateRefused`, `SshError`).

`DEVSPACE_SSH_CLIENT` chooses: `auto` (the default: OpenSSH when an OpenSSH client of 7.3 or
newer is found and the API published the gateway's key itself, not only its fingerprint;
paramiko otherwise), `openssh` (OpenSSH, or an error saying why not) or `paramiko`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
from cryptography.hazmat.primitives.serialization import SSHCertificate

from devspace.errors import AuthError, DevspaceError, SshError, UsageError
from devspace.hops import (
    CertificateRefused,
    Hop,
    Identity,
    gateway_refused,
    mismatch,
    refusal,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc's from Python 3.12

log = logging.getLogger(__name__)

CLIENT_SETTING = "DEVSPACE_SSH_CLIENT"
"""The environment variable that chooses the gateway hop's client: auto, openssh, paramiko."""
MINIMUM_VERSION = (7, 3)
"""OpenSSH's first release with every option used here (IdentityAgent; CertificateFile: 7.2)."""
CARRIER = "pipe" if os.name == "nt" else "socket"
"""How bytes reach the process: a socket pair (measured faster: no thread, no copies in
Python) or pipes (Windows, where a socket cannot be a child's standard handle)."""
GATEWAY_ALIAS = "devspace-gateway"
"""The gateway's name in the known_hosts files given to `ssh -W` (`HostKeyAlias`): no
[host]:port spelling to get right, and an address change needs no new line."""
# Per pinned key type, the signature algorithms to offer, so the server presents the pinned key.
HOST_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


@functools.cache
def openssh_client() -> tuple[str | None, str]:
    """Return (path of a usable OpenSSH client, its version line), or (None, why there is none).

    Looked for on PATH (`ssh`, `ssh.exe` on Windows) and where Windows 10 and later install it.
    """
    candidates = [shutil.which("ssh")]
    if os.name == "nt":
        root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        candidates.append(str(Path(root, "System32", "OpenSSH", "ssh.exe")))
    reasons = []
    for program in filter(None, candidates):
        try:
            version = subprocess.run(
                [program, "-V"],
                check=False,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=10,
            ).stderr.strip()
        except (OSError, subprocess.SubprocessError) as error:
            reasons.append(f"{program} does not run ({error})")
            continue
        found = re.search(r"OpenSSH_(?:for_Windows_)?(\d+)\.(\d+)", version)
        if found and (int(found[1]), int(found[2])) >= MINIMUM_VERSION:
            return program, version
        reasons.append(f"{program} is {version or 'not OpenSSH'}, not OpenSSH 7.3 or newer")
    return None, "; ".join(reasons) or "no `ssh` on PATH"


def gateway_client(gateway: Hop) -> str | None:
    """The OpenSSH client to make the hop to `gateway` with, or None to make it with paramiko.

    Raises:
        UsageError: DEVSPACE_SSH_CLIENT is not auto, openssh or paramiko; or it is openssh and
            no OpenSSH client is usable or the gateway's key is known only by its fingerprint.
    """
    choice = os.environ.get(CLIENT_SETTING, "auto").strip().lower() or "auto"
    if choice not in ("auto", "openssh", "paramiko"):
        raise UsageError(f"{CLIENT_SETTING}={choice!r}: write auto, openssh or paramiko")
    if choice == "paramiko":
        return None
    if gateway.host_key.key is None:
        if choice == "openssh":
            raise UsageError(
                f"{CLIENT_SETTING}=openssh, but the server publishes only the fingerprint of "
                f"{gateway}'s host key, and OpenSSH needs the key to pin it"
            )
        return None
    program, why = openssh_client()
    if program is None and choice == "openssh":
        raise UsageError(f"{CLIENT_SETTING}=openssh, but {why}")
    return program


def command(
    program: str,
    gateway: Hop,
    target: Hop,
    identity: Identity,
    known_hosts: Path,
    *,
    ciphers: Sequence[str],
    macs: Sequence[str],
    timeout: float,
    keepalive: int,
) -> list[str]:
    """The `ssh -W` command line that joins its stdin and stdout to `target` through `gateway`."""
    key_type = gateway.host_key.key_type or ""
    options = {
        "BatchMode": "yes",  # never a prompt: a question nobody sees would hang the CLI
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "IdentityFile": _quoted(identity.private_key),
        "CertificateFile": _quoted(identity.certificate),
        "PreferredAuthentications": "publickey",
        "HostKeyAlias": GATEWAY_ALIAS,
        "UserKnownHostsFile": _quoted(known_hosts),
        "GlobalKnownHostsFile": _quoted(Path(os.devnull)),
        "StrictHostKeyChecking": "yes",
        "UpdateHostKeys": "no",
        "CheckHostIP": "no",
        "HostKeyAlgorithms": ",".join(HOST_KEY_ALGORITHMS.get(key_type, (key_type,))),
        "Ciphers": ",".join(ciphers),
        "MACs": ",".join(macs),
        "ConnectTimeout": str(max(1, round(timeout))),
        "ServerAliveInterval": str(keepalive),
        "ServerAliveCountMax": "3",
        "ControlMaster": "no",
        "ControlPath": "none",
        # INFO, not ERROR: a refused direct-tcpip ("open failed: …") is logged at INFO.
        "LogLevel": "INFO",
        "User": gateway.user,
        "Port": str(gateway.port),
    }
    host = f"[{target.host}]" if ":" in target.host else target.host
    argv = [program, "-F", "none"]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    return [*argv, "-W", f"{host}:{target.port}", "--", gateway.host]


def _quoted(path: Path) -> str:
    # ssh splits an -o value on spaces unless quoted, and expands % and a leading ~.
    text = str(path).replace("%", "%%").replace('"', '\\"')
    return f'"{text}"'


class PipeSocket(paramiko.ProxyCommand):
    """paramiko's ProxyCommand over a running process's stdin and stdout, read by a thread
    (Windows' select() takes sockets only, and paramiko's reads with it)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        # ProxyCommand.__init__ would start a process of its own: not called.
        assert process.stdin is not None  # noqa: S101
        assert process.stdout is not None  # noqa: S101
        self.process = process
        self.timeout: float | None = None
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._buffer = bytearray()
        self._ended = False
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, name="ssh-stdout", daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := self._stdout.read(1 << 18):
                with self._arrived:
                    self._buffer += chunk
                    self._arrived.notify()
        with self._arrived:
            self._ended = True
            self._arrived.notify_all()

    def send(self, content: Buffer) -> int:
        """Write `content` to the process; returns how much was written. Raises: OSError."""
        written = self._stdin.write(content)
        return len(memoryview(content)) if written is None else written

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes from the process; b"" at its end. Raises: TimeoutError."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._buffer or self._ended, self.timeout):
                raise TimeoutError
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data

    def close(self) -> None:
        """End the process's input, so it ends the hop."""
        with contextlib.suppress(OSError):
            self._stdin.close()

    @property
    def closed(self) -> bool:
        return self._stdin.closed

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout


class OpenSshHop:
    """`ssh -W target gateway`, running: paramiko speaks to `target` over `sock`.

    `failure()` says why the process ended, as our error; `close()` ends it.
    """

    def __init__(
        self,
        program: str,
        gateway: Hop,
        target: Hop,
        identity: Identity,
        *,
        ciphers: Sequence[str],
        macs: Sequence[str],
        timeout: float,
        keepalive: int,
        carrier: str | None = None,
    ) -> None:
        """Start the process, its stdin and stdout carried by `carrier` ("socket" or "pipe";
        `CARRIER` by default). Raises: SshError if the process cannot start."""
        self.gateway = gateway
        self.target = target
        self.program = program
        self._stderr: deque[str] = deque(maxlen=40)
        descriptor, name = tempfile.mkstemp(prefix="devspace-", suffix=".known_hosts")
        self.known_hosts = Path(name)
        self.pins = f"{GATEWAY_ALIAS} {gateway.host_key.key}\n"
        with os.fdopen(descriptor, "w", encoding="ascii") as pins:
            pins.write(self.pins)
        self.argv = command(
            program, gateway, target, identity, self.known_hosts,
            ciphers=ciphers, macs=macs, timeout=timeout, keepalive=keepalive,
        )  # fmt: skip
        carrier = carrier or CARRIER
        # Its own session or process group: Ctrl-C at the terminal is ours to handle, and
        # closing its input ends it when we are done (or killed).
        session = os.name != "nt"
        group = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        log.debug("gateway hop: %s", " ".join(self.argv))
        ours, theirs = socket.socketpair() if carrier == "socket" else (None, None)
        try:
            if ours is not None and theirs is not None:
                with theirs:
                    self.process = subprocess.Popen(
                        self.argv,
                        stdin=theirs.fileno(),
                        stdout=theirs.fileno(),
                        stderr=subprocess.PIPE,
                        start_new_session=session,
                        creationflags=group,
                    )
                self.sock: socket.socket | PipeSocket = ours
            else:
                self.process = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    bufsize=0,
                    start_new_session=session,
                    creationflags=group,
                )
                self.sock = PipeSocket(self.process)
        except OSError as error:
            for end in (ours, theirs):
                if end is not None:
                    end.close()
            self.known_hosts.unlink(missing_ok=True)
            raise SshError(
                f"cannot start the OpenSSH client {program} for the hop to {gateway}: "
                f"{error.strerror or error}; set {CLIENT_SETTING}=paramiko to do without it"
            ) from error
        self._reader = threading.Thread(target=self._read_stderr, name="ssh-stderr", daemon=True)
        self._reader.start()

    def settled(self) -> None:
        """Call once the hop carries the inner handshake: ssh has checked the gateway's key,
        so its known_hosts file goes now (not only at `close`, which a kill would skip)."""
        self.known_hosts.unlink(missing_ok=True)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None  # noqa: S101
        with contextlib.suppress(OSError, ValueError):
            for raw in self.process.stderr:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    log.debug("gateway hop (ssh): %s", line)
                    self._stderr.append(line)

    def ended(self, wait: float = 0.0) -> bool:
        """Whether the process has exited, waiting up to `wait` seconds for it."""
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            return False
        self._reader.join(2)
        return True

    def failure(self, certificate: SSHCertificate, wait: float = 2.0) -> DevspaceError | None:
        """Why the hop failed, as the error to raise, if the process ended (within `wait`
        seconds); None while it runs, when the fault is further on."""
        if not self.ended(wait):
            return None
        return diagnose(
            "\n".join(self._stderr),
            self.process.returncode,
            gateway=self.gateway,
            target=self.target,
            certificate=certificate,
            program=self.program,
        )

    def why_ended(self) -> str | None:
        """A short reason if the process has ended (for "connection lost" messages), else None."""
        if not self.ended():
            return None
        last = self._stderr[-1] if self._stderr else f"exit status {self.process.returncode}"
        if self.process.returncode < 0 and not self._stderr:
            last = f"killed by signal {-self.process.returncode}"
        return f"the OpenSSH client for the hop to {self.gateway} ended: {last}"

    def close(self) -> None:
        """End the process (its input first, then a signal) and remove its known_hosts file."""
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(2)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.known_hosts.unlink(missing_ok=True)


def diagnose(  # noqa: PLR0911 - one return per failure that OpenSSH names
    stderr: str,
    status: int,
    *,
    gateway: Hop,
    target: Hop,
    certificate: SSHCertificate,
    program: str = "ssh",
) -> DevspaceError:
    """The error for an `ssh -W` to `target` through `gateway` that ended with `status`, having
    written `stderr`: the types and messages of the paramiko hop's errors, so that nobody has
    to know which client ran."""
    where = f"{gateway} at {gateway.host}:{gateway.port}"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key verification" in stderr:
        presented = re.search(r"SHA256:[A-Za-z0-9+/]{43}", stderr)
        return mismatch(gateway, presented[0] if presented else "another key")
    if "no matching host key type" in stderr:
        return mismatch(gateway, f"no {gateway.host_key.key_type} key at all")
    if "Permission denied" in stderr:
        return CertificateRefused(refusal(gateway, certificate))
    if found := re.search(r"open failed: (.*)", stderr):
        return gateway_refused(gateway, target, found[1])
    if "Connection refused" in stderr:
        return SshError(
            f"connection refused by {where} — nothing listens there; check the server "
            "address, or whether the gateway is running"
        )
    if "timed out" in stderr.lower():
        return SshError(f"timed out connecting to {where}")
    if found := re.search(r"Could not resolve hostname [^:]*: (.*)", stderr):
        return SshError(f"cannot resolve {gateway.host} ({gateway}): {found[1]}")
    if "not responding" in stderr:
        return SshError(f"{gateway} stopped answering ({last})")
    if re.search(r"[Bb]ad configuration option|[Uu]nsupported option|[Uu]sage: ssh", stderr):
        return SshError(
            f"the OpenSSH client {program} does not accept devspace's options ({last}); "
            f"set {CLIENT_SETTING}=paramiko to use the built-in client"
        )
    if re.search(r"(UNPROTECTED PRIVATE KEY|bad permissions|are too open)", stderr):
        return AuthError(
            f"OpenSSH refuses to use the devspace key: its permissions are too open ({last}); "
            f"make it readable by you only, or set {CLIENT_SETTING}=paramiko"
        )
    if found := re.search(r"connect to host .* port \d+: (.*)", stderr):
        return SshError(f"cannot reach {where}: {found[1]}")
    said = last or (f"killed by signal {-status}" if status < 0 else f"exit status {status}")
    return SshError(f"the OpenSSH client could not reach {target} through {gateway}: {said}")
