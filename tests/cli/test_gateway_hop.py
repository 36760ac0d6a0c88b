"""The gateway hop made by OpenSSH (`devspace.jump`): `ssh -W` through a real sshd in the
gateway's shape (tests/cli/jump_host.py) to the real sidecar, its failures as our errors, the
process dying under a session and tunnels coming back, and the fallbacks to paramiko.

tests/cli/remote runs the same path against the real gateway pod and server; test_ssh_connection.py
runs its two-hop tests with both clients.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# The sidecar's fixtures, as in test_ssh_connection.py: this module gets its own sidecar pod.
from ssh.conftest import *  # noqa: F403
from ssh.conftest import Keys, Sidecar

from cli.jump_host import JumpHost, free_local_port, identity, pin, running_jump_host
from devspace import jump
from devspace.errors import SshError, UsageError
from devspace.ssh import CertificateRefused, Connection, Hop, HostKeyMismatch, PinnedHostKey
from devspace.tunnels import PortPair, Tunnels
from testbed.eventually import eventually

pytestmark = [pytest.mark.kube, pytest.mark.node]


@pytest.fixture(scope="module")
def jump_host(sidecar: Sidecar, keys: Keys) -> Iterator[JumpHost]:
    with running_jump_host(sidecar, keys) as host:
        yield host


@pytest.fixture
def target(sidecar: Sidecar, keys: Keys) -> Hop:
    return Hop(sidecar.ip, 2222, "dev", pin(keys.path("host.pub")), name="space test")


@pytest.fixture(autouse=True)
def openssh(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenSSH or an error: a silent fallback to paramiko would pass these tests for nothing."""
    monkeypatch.setenv(jump.CLIENT_SETTING, "openssh")


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return str(response.read().decode())


@pytest.mark.parametrize("carrier", ["socket", "pipe"])
def test_the_hop_is_a_strict_ssh_process_that_carries_everything(
    target: Hop, keys: Keys, jump_host: JumpHost, carrier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jump, "CARRIER", carrier)  # the pipes are Windows' carrier
    with Connection(target, identity(keys, "jumped"), gateway=jump_host.hop) as connection:
        assert connection.run("id -un").stdout == b"dev\n"
        hop = connection._jump
        assert hop is not None
        assert len(connection._transports) == 1  # paramiko speaks to the sidecar only
        assert isinstance(connection._transports[0].sock, jump.PipeSocket) == (carrier == "pipe")
        argv = " ".join(hop.argv)
        for option in (
            "-F none",
            "BatchMode=yes",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "StrictHostKeyChecking=yes",
            "HostKeyAlgorithms=ssh-ed25519",
            "Ciphers=aes128-gcm@openssh.com,",
            f"-W {target.host}:2222 -- 127.0.0.1",
        ):
            assert option in argv
        # Only the gateway's published key is trusted, under a name of our own; the file is
        # gone once ssh has checked it, so a killed devspace leaves nothing behind.
        assert hop.pins == f"devspace-gateway {jump_host.hop.host_key.key}\n"
        assert f'UserKnownHostsFile="{hop.known_hosts}"' in argv
        assert not hop.known_hosts.exists()
        data = os.urandom(4 * 1024 * 1024)  # both ways at once, windows' worth several times
        assert connection.run("cat", stdin=data).stdout == data
        forward = connection.forward_local(0, "127.0.0.1", 8000)
        assert "Directory listing" in get(forward.port)
    assert hop.process.returncode is not None  # closing the connection ended the process
    assert not hop.known_hosts.exists()


def test_a_gateway_host_key_mismatch_names_both_keys(
    target: Hop, keys: Keys, jump_host: JumpHost
) -> None:
    wrong = pin(keys.path("other-ca.pub"))  # any other Ed25519 key
    gateway = Hop("127.0.0.1", jump_host.hop.port, "devspace", wrong, name="the gateway")
    with pytest.raises(HostKeyMismatch) as raised:
        Connection(target, identity(keys, "gateway-mismatch"), gateway=gateway).open()
    message = str(raised.value)
    assert message.startswith(f"host key mismatch for the gateway: expected {wrong.fingerprint}")
    assert f"got {jump_host.hop.host_key.fingerprint}" in message  # as OpenSSH saw it
    assert raised.value.exit_code == 5
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("signing", "explanation"),
    [
        ({"ca": "other-ca"}, "signed by an authority the gateway does not trust"),
        ({"validity": "-2h:-1h"}, "certificate expired at"),
    ],
)
def test_a_certificate_the_gateway_refuses_is_certificate_refused(
    target: Hop, keys: Keys, jump_host: JumpHost, signing: dict[str, object], explanation: str
) -> None:
    connection = Connection(target, identity(keys, "refused", **signing), gateway=jump_host.hop)
    with pytest.raises(CertificateRefused, match=explanation) as raised:
        connection.open()
    assert str(raised.value).startswith("the gateway refused your SSH certificate")
    assert raised.value.exit_code == 3


def test_nothing_listening_at_the_gateway_is_a_clear_error(target: Hop, keys: Keys) -> None:
    port = free_local_port()
    nobody = Hop("127.0.0.1", port, "devspace", pin(keys.path("host.pub")), name="the gateway")
    with pytest.raises(SshError) as raised:
        Connection(target, identity(keys, "nobody"), gateway=nobody).open()
    assert str(raised.value) == (
        f"connection refused by the gateway at 127.0.0.1:{port} — nothing listens there; "
        "check the server address, or whether the gateway is running"
    )


def test_the_process_dying_under_a_session_is_a_lost_connection(
    target: Hop, keys: Keys, jump_host: JumpHost
) -> None:
    with Connection(target, identity(keys, "killed"), gateway=jump_host.hop) as connection:
        assert connection.run("true").exit_status == 0
        assert connection._jump is not None
        connection._jump.process.send_signal(signal.SIGKILL)
        error = eventually(lambda: _lost(connection), what="the connection to notice")
        assert str(error) == (
            "the connection to space test was lost (the OpenSSH client for the hop to the "
            "gateway ended: killed by signal 9)"
        )
        with pytest.raises(SshError, match="was lost"):
            connection.run("true")


def _lost(connection: Connection) -> SshError | None:
    try:
        connection.check()
    except SshError as error:
        return error
    return None


def test_tunnels_come_back_when_the_process_dies(
    target: Hop, keys: Keys, jump_host: JumpHost
) -> None:
    made: list[Connection] = []

    def connect() -> Connection:
        made.append(Connection(target, identity(keys, "tunnel"), gateway=jump_host.hop))
        return made[-1]

    said: list[str] = []
    with Tunnels(connect, [PortPair(0, 8000)], say=said.append, probe_every=0.2) as tunnels:
        tunnels.start()
        threading.Thread(target=tunnels.run, daemon=True).start()
        port = tunnels.forwards[0].port
        assert "Directory listing" in get(port)
        first = made[0]._jump
        assert first is not None
        first.process.send_signal(signal.SIGKILL)
        eventually(lambda: tunnels.reconnects == 1, what="the tunnels to reconnect", timeout=20)
        assert "Directory listing" in get(port)  # the same local port, a new process behind it
        assert made[-1]._jump is not None
        assert made[-1]._jump.process.pid != first.process.pid
    assert any("killed by signal 9" in line for line in said), said


# The fallbacks to paramiko, and when there is none.


def test_a_gateway_pinned_by_fingerprint_only_is_reached_with_paramiko(
    target: Hop, keys: Keys, jump_host: JumpHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_fingerprint = PinnedHostKey.published(fingerprint=jump_host.hop.host_key.fingerprint)
    gateway = Hop("127.0.0.1", jump_host.hop.port, "devspace", by_fingerprint, name="the gateway")
    with pytest.raises(UsageError, match="OpenSSH needs the key to pin it"):
        Connection(target, identity(keys, "fingerprint"), gateway=gateway).open()
    monkeypatch.setenv(jump.CLIENT_SETTING, "auto")
    with Connection(target, identity(keys, "fingerprint"), gateway=gateway) as connection:
        assert connection.run("id -un").stdout == b"dev\n"
        assert connection._jump is None
        assert len(connection._transports) == 2


@pytest.mark.parametrize("found", ["nothing", "another ssh"])
def test_without_an_openssh_client_the_hop_is_paramikos(
    target: Hop,
    keys: Keys,
    jump_host: JumpHost,
    *,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    found: str,
) -> None:
    if found == "another ssh":  # as Dropbear's, which takes none of OpenSSH's options
        fake = tmp_path / "ssh"
        fake.write_text("#!/bin/sh\necho 'Dropbear v2022.83' >&2\nexit 1\n")
        fake.chmod(0o755)
    signed = identity(keys, "no-ssh")  # with ssh-keygen, before PATH loses it
    monkeypatch.setenv("PATH", str(tmp_path))
    jump.openssh_client.cache_clear()
    try:
        with pytest.raises(UsageError, match="DEVSPACE_SSH_CLIENT=openssh, but"):
            Connection(target, signed, gateway=jump_host.hop).open()
        monkeypatch.setenv(jump.CLIENT_SETTING, "auto")
        with Connection(target, signed, gateway=jump_host.hop) as connection:
            assert connection.run("id -un").stdout == b"dev\n"
            assert connection._jump is None
    finally:
        monkeypatch.undo()
        jump.openssh_client.cache_clear()


def test_a_setting_that_is_not_a_client_is_a_usage_error(
    target: Hop, keys: Keys, jump_host: JumpHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(jump.CLIENT_SETTING, "putty")
    with pytest.raises(UsageError, match="write auto, openssh or paramiko"):
        Connection(target, identity(keys, "setting"), gateway=jump_host.hop).open()


# What OpenSSH says, turned into our errors: the failures a test cannot make on demand.


@pytest.mark.parametrize(
    ("stderr", "status", "expected"),
    [
        (
            "ssh: connect to host 10.0.0.9 port 2222: Connection timed out",
            255,
            "timed out connecting to the gateway at 10.0.0.9:2222",
        ),
        (
            "ssh: Could not resolve hostname gw.example: Name or service not known",
            255,
            "cannot resolve 10.0.0.9 (the gateway): Name or service not known",
        ),
        (
            "Timeout, server 10.0.0.9 not responding.",
            255,
            "the gateway stopped answering (Timeout, server 10.0.0.9 not responding.)",
        ),
        (
            "ssh: connect to host 10.0.0.9 port 2222: No route to host",
            255,
            "cannot reach the gateway at 10.0.0.9:2222: No route to host",
        ),
        (
            "command-line line 0: Bad configuration option: certificatefile",
            255,
            "the OpenSSH client ssh does not accept devspace's options (command-line line 0: "
            "Bad configuration option: certificatefile); set DEVSPACE_SSH_CLIENT=paramiko",
        ),
        (
            "channel 0: open failed: connect failed: Connection refused\nstdio forwarding failed",
            255,
            "the gateway refused to connect to space test (10.1.0.5:2222): connect failed: "
            "Connection refused — the space is not running",
        ),
        ("", -9, "could not reach space test through the gateway: killed by signal 9"),
    ],
)
def test_what_openssh_says_becomes_an_error_to_act_on(
    keys: Keys, stderr: str, status: int, expected: str
) -> None:
    gateway = Hop("10.0.0.9", 2222, "devspace", pin(keys.path("host.pub")), name="the gateway")
    target = Hop("10.1.0.5", 2222, "dev", pin(keys.path("host.pub")), name="space test")
    _, certificate = identity(keys, "diagnosed").load()
    error = jump.diagnose(stderr, status, gateway=gateway, target=target, certificate=certificate)
    assert type(error) is SshError
    assert expected in str(error)


def test_a_client_socket_pair_end_is_what_paramiko_reads(
    target: Hop, keys: Keys, jump_host: JumpHost
) -> None:
    # The process's end is closed in this process: its exit must reach paramiko as EOF.
    with Connection(target, identity(keys, "pair"), gateway=jump_host.hop) as connection:
        connection.open()
        assert connection._jump is not None
        sock = connection._jump.sock
        assert isinstance(sock, socket.socket)
        assert sock.family == socket.AF_UNIX
        connection._jump.process.terminate()
        eventually(lambda: _lost(connection), what="EOF from the ended process")
