"""A stand-in for the gateway on 127.0.0.1 (`running_jump_host`: Debian's real sshd in the
gateway's shape), and the helpers the connection tests share: `identity` (a signed user key),
`pin`, `free_local_port`. Used by test_ssh_connection.py and test_gateway_hop.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ssh.conftest import OWNER, Keys, Sidecar, keygen

from devspace.ssh import Hop, Identity, PinnedHostKey
from testbed.eventually import eventually


def identity(keys: Keys, name: str, **signing: object) -> Identity:
    """The user key with a certificate of its own, `<name>-cert.pub`, signed as `signing` says."""
    key = keys.sign(name, **signing)  # type: ignore[arg-type]
    return Identity(key, key.with_name(f"{name}-cert.pub"))


def pin(public_key: Path) -> PinnedHostKey:
    return PinnedHostKey.published(public_key.read_text())


def free_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class JumpHost:
    hop: Hop
    log: Path


@contextmanager
def running_jump_host(sidecar: Sidecar, keys: Keys) -> Iterator[JumpHost]:
    """Debian's real sshd on 127.0.0.1 in the gateway's shape, as a stand-in for it.

    Like sshd-image/gateway/sshd_config it trusts the CA, allows only `direct-tcpip` and only
    to the sidecar's `podIP:2222`, and has no sessions (`MaxSessions 0`). It runs non-root as
    `devspace`, the gateway's login user, which exists only in the private mount namespace it
    runs in (this machine's own accounts are locked, and sshd refuses locked accounts). Its
    principals file is fixed: the production gateway (sshd-image/gateway, whose principals and
    permitopen come from the server) replaces this jump host in the end-to-end tests once the
    server's gateway endpoint exists.
    """
    directory = Path(tempfile.mkdtemp(prefix="devspace-jump-"))
    directory.chmod(0o755)  # pytest's own temporary directories are closed to other users
    keygen(directory / "host")
    shutil.copy(keys.path("ca.pub"), directory / "ca.pub")
    (directory / "principals").write_text(f"{OWNER}\n")
    (directory / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\ndevspace:x:10001:10001::/nonexistent:/usr/sbin/nologin\n"
    )
    (directory / "group").write_text("root:x:0:\ndevspace:x:10001:\n")
    port = free_local_port()
    (directory / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\n"
        f"HostKey {directory / 'host'}\n"
        "PidFile none\nUsePAM no\nStrictModes no\n"
        "AuthenticationMethods publickey\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        f"TrustedUserCAKeys {directory / 'ca.pub'}\n"
        "AuthorizedKeysFile none\n"
        f"AuthorizedPrincipalsFile {directory / 'principals'}\n"
        "MaxSessions 0\nPermitTTY no\nForceCommand /bin/false\n"
        f"AllowTcpForwarding local\nPermitOpen {sidecar.ip}:2222\nPermitListen none\n"
        "AllowAgentForwarding no\nX11Forwarding no\nPermitTunnel no\nLogLevel VERBOSE\n"
    )
    for path in directory.iterdir():
        os.chown(path, 10001, 10001)
    # unshare, sh, setpriv and sshd exec one another: the process we start is sshd itself.
    script = (
        f"mount --bind {directory}/passwd /etc/passwd && "
        f"mount --bind {directory}/group /etc/group && "
        "exec setpriv --reuid=10001 --regid=10001 --clear-groups "
        f"/usr/sbin/sshd -D -e -f {directory}/sshd_config"
    )
    log = directory / "sshd.log"
    with log.open("wb") as stderr:
        sshd = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], stderr=stderr
        )
    try:
        eventually(
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
            what="the jump host to listen",
            timeout=10,
            ignore=(OSError,),
        )
        hop = Hop("127.0.0.1", port, "devspace", pin(directory / "host.pub"), name="the gateway")
        yield JumpHost(hop, log)
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        shutil.rmtree(directory)
