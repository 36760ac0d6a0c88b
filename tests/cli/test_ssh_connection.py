"""`devspace.ssh.Connection` against the real sidecar (Debian's sshd with sshd-image/'s files in
a pod on the test node), directly and through a real OpenSSH jump host.

Certificates come from the ssh-keygen CA of tests/ssh/conftest.py (`keys`); the server's CA
replaces it once the end-to-end tests get certificates from the API. The jump host is a stand-in
(see `jump_host`): the production gateway (sshd-image/gateway, whose principals come from the
server) replaces it in the end-to-end tests once the server's gateway endpoint exists.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# Every fixture of the sidecar's conftest, as they depend on one another by name and their set
# still grows: this module gets its own sidecar pod, made exactly as tests/ssh makes it.
from ssh.conftest import *  # noqa: F403
from ssh.conftest import Keys, Sidecar

from cli.jump_host import JumpHost, free_local_port, identity, pin, running_jump_host
from devspace.errors import AuthError, SshError, UsageError
from devspace.ssh import (
    CertificateRefused,
    Connection,
    ForwardError,
    Hop,
    HostKeyMismatch,
    Identity,
    PinnedHostKey,
    Result,
)
from testbed.eventually import eventually

pytestmark = [pytest.mark.kube, pytest.mark.node]


@pytest.fixture
def target(sidecar: Sidecar, keys: Keys) -> Hop:
    return Hop(sidecar.ip, 2222, "dev", pin(keys.path("host.pub")), name="space test")


@pytest.fixture
def connection(target: Hop, keys: Keys) -> Iterator[Connection]:
    with Connection(target, identity(keys, "connection")) as connection:
        yield connection


# One hop: straight to the sidecar.


def test_gcm_is_what_debians_sshd_and_we_agree_on(connection: Connection) -> None:
    assert connection.cipher == "aes128-gcm@openssh.com"


def test_run_returns_exit_status_stdout_and_stderr(connection: Connection) -> None:
    assert connection.run("echo out; echo err >&2; exit 3") == Result(3, b"out\n", b"err\n")
    assert connection.run(["printf", "%s|", "two words", "it's"]).stdout == b"two words|it's|"


def test_run_feeds_stdin_larger_than_the_channel_window(connection: Connection) -> None:
    data = os.urandom(8 * 1024 * 1024)  # several windows: stdin and stdout must flow together
    result = connection.run("cat; echo done >&2", stdin=data)
    assert (result.exit_status, result.stdout == data, result.stderr) == (0, True, b"done\n")


def test_exec_streams_both_ways(connection: Connection) -> None:
    with connection.exec(["sh", "-c", "tr a-z A-Z; exit 7"]) as process:
        process.write(b"hello ")
        process.write(b"stream\n")
        process.close_stdin()
        output = b""
        while chunk := process.read():
            output += chunk
        assert (output, process.wait()) == (b"HELLO STREAM\n", 7)


def test_a_silent_command_times_out(connection: Connection) -> None:
    started = time.monotonic()
    with pytest.raises(SshError, match="timed out reading from `sleep 10`"):
        connection.run("sleep 10", timeout=0.5)
    assert time.monotonic() - started < 5
    assert connection.run("echo still usable").exit_status == 0


def test_pins_are_checked_when_published(keys: Keys) -> None:
    line = keys.path("host.pub").read_text()
    pinned = PinnedHostKey.published(line)
    assert pinned.key_type == "ssh-ed25519"
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(keys.path("host.pub"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert pinned.fingerprint == fingerprint  # the same text `ssh-keygen -l` shows
    assert PinnedHostKey.published(line, fingerprint) == pinned
    with pytest.raises(UsageError, match="does not match"):
        PinnedHostKey.published(
            line, PinnedHostKey.published(keys.path("ca.pub").read_text()).fingerprint
        )
    with pytest.raises(UsageError):
        PinnedHostKey.published()
    with pytest.raises(UsageError):
        PinnedHostKey.published("ssh-ed25519 not-base64!")


def test_a_missing_certificate_is_an_auth_error(target: Hop, keys: Keys, tmp_path: Path) -> None:
    missing = Identity(keys.path("user"), tmp_path / "nowhere-cert.pub")
    with pytest.raises(AuthError, match=r"cannot read .*nowhere-cert\.pub"):
        Connection(target, missing).open()


def test_nothing_happens_before_first_use(keys: Keys) -> None:
    nobody = Hop("127.0.0.1", free_local_port(), "dev", pin(keys.path("host.pub")))
    connection = Connection(nobody, identity(keys, "lazy"))  # no error yet: nothing dialled
    with pytest.raises(SshError, match=r"connection refused by 127\.0\.0\.1:") as raised:
        connection.run("true")
    assert raised.value.exit_code == 5
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


def test_sftp_is_one_client_that_puts_and_gets(connection: Connection, tmp_path: Path) -> None:
    upload = tmp_path / "up.bin"
    upload.write_bytes(os.urandom(300_000))
    sftp = connection.sftp()
    assert connection.sftp() is sftp
    sftp.put(str(upload), "/workspace/up.bin")
    sftp.get("/workspace/up.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == upload.read_bytes()
    assert connection.run("stat -c %s /workspace/up.bin").stdout == b"300000\n"


def test_a_fingerprint_alone_pins_too(target: Hop, keys: Keys) -> None:
    by_fingerprint = PinnedHostKey.published(fingerprint=target.host_key.fingerprint)
    hop = Hop(target.host, target.port, target.user, by_fingerprint)
    with Connection(hop, identity(keys, "fingerprint")) as connection:
        assert connection.run("id -un").stdout == b"dev\n"


def test_a_different_host_key_aborts_naming_both_fingerprints(target: Hop, keys: Keys) -> None:
    wrong = pin(keys.path("other-ca.pub"))  # any other Ed25519 key
    hop = Hop(target.host, target.port, target.user, wrong, name="space test")
    with (
        Connection(hop, identity(keys, "mismatch")) as connection,
        pytest.raises(HostKeyMismatch) as raised,
    ):
        connection.run("true")
    message = str(raised.value)
    assert message.startswith("host key mismatch for space test: expected SHA256:")
    assert wrong.fingerprint in message
    assert target.host_key.fingerprint in message
    assert "someone is intercepting" in message
    assert raised.value.exit_code == 5


@pytest.mark.parametrize(
    ("signing", "explanation"),
    [
        ({"ca": "other-ca"}, "signed by an authority space test does not trust"),
        ({"principals": "someone-else"}, "principals someone-else"),
        ({"validity": "-2h:-1h"}, "certificate expired at"),
    ],
)
def test_a_refused_certificate_is_an_auth_error(
    target: Hop, keys: Keys, signing: dict[str, object], explanation: str
) -> None:
    with (
        Connection(target, identity(keys, "refused", **signing)) as connection,
        pytest.raises(CertificateRefused, match=explanation) as raised,
    ):
        connection.run("true")
    assert isinstance(raised.value, AuthError)
    assert raised.value.exit_code == 3


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return str(response.read().decode())


def test_local_forward_reaches_the_pods_localhost_concurrently(connection: Connection) -> None:
    forward = connection.forward_local(0, "127.0.0.1", 8000)
    assert "Directory listing" in get(forward.port)
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(get, [forward.port] * 32))
    assert all("Directory listing" in body for body in bodies)
    connection.check()  # nothing went wrong


def test_a_port_in_use_is_a_clear_error(connection: Connection) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ForwardError, match=f"cannot listen on 127.0.0.1:{port}.*in use"):
            connection.forward_local(port, "127.0.0.1", 8000)


def test_a_forward_threads_error_surfaces_on_check_and_close(target: Hop, keys: Keys) -> None:
    connection = Connection(target, identity(keys, "forward-error"))
    # The sidecar forwards only to the pod itself: this channel is refused in the thread.
    forward = connection.forward_local(0, "10.255.255.1", 80)
    with socket.create_connection(("127.0.0.1", forward.port)) as client:
        assert client.recv(1) == b""  # the tunnel hung up on us
    error = eventually(lambda: _raised(connection.check), what="the forward's error")
    assert isinstance(error, ForwardError)
    assert "forward to 10.255.255.1:80 failed" in str(error)
    assert "prohibited" in str(error)
    connection.check()  # reported once
    with socket.create_connection(("127.0.0.1", forward.port)) as client:
        assert client.recv(1) == b""
    eventually(lambda: len(forward._errors), what="a second error")
    with pytest.raises(ForwardError):  # the second one, unreported, comes out of close()
        connection.close()
    connection.close()  # idempotent: closed, nothing more to report


def _raised(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except Exception as error:
        return error
    return None


def test_close_is_idempotent_and_final(target: Hop, keys: Keys) -> None:
    connection = Connection(target, identity(keys, "close"))
    forward = connection.forward_local(0, "127.0.0.1", 8000)
    assert connection.run("true").exit_status == 0
    connection.close()
    connection.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", forward.port), timeout=2).close()
    with pytest.raises(SshError, match="is closed"):
        connection.run("true")


# Two hops: through a jump host to the sidecar.


@pytest.fixture(scope="module")
def jump_host(sidecar: Sidecar, keys: Keys) -> Iterator[JumpHost]:
    with running_jump_host(sidecar, keys) as host:
        yield host


@pytest.fixture(params=["openssh", "paramiko"])
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Who makes the gateway hop: each two-hop test runs with both (test_gateway_hop.py has
    the OpenSSH hop's own tests)."""
    monkeypatch.setenv("DEVSPACE_SSH_CLIENT", request.param)
    return str(request.param)


@pytest.mark.usefixtures("client")
def test_two_hops_run_sftp_and_forward(target: Hop, keys: Keys, jump_host: JumpHost) -> None:
    with Connection(target, identity(keys, "two-hops"), gateway=jump_host.hop) as connection:
        assert connection.run("id -un; echo $SSH_CONNECTION").stdout.split()[0] == b"dev"
        connection.sftp().putfo(io.BytesIO(b"via the jump host"), "jumped.txt")
        assert connection.run("cat /workspace/jumped.txt").stdout == b"via the jump host"
        forward = connection.forward_local(0, "127.0.0.1", 8000)
        assert "Directory listing" in get(forward.port)


@pytest.mark.usefixtures("client")
def test_a_target_the_jump_host_does_not_permit_fails_clearly(
    target: Hop, keys: Keys, jump_host: JumpHost
) -> None:
    elsewhere = Hop("127.0.0.1", 2222, "dev", target.host_key, name="space other")
    with (
        Connection(elsewhere, identity(keys, "elsewhere"), gateway=jump_host.hop) as connection,
        pytest.raises(SshError, match="the gateway refused to connect to space other") as raised,
    ):
        connection.run("true")
    assert "prohibited" in str(raised.value)
    assert "not running or is not yours" in str(raised.value)
    log = jump_host.log.read_text()  # refused by the jump host itself, not further on
    assert "to connect to host 127.0.0.1 port 2222, but the request was denied" in log


@pytest.mark.usefixtures("client")
def test_the_jump_hosts_key_is_pinned_too(target: Hop, keys: Keys, jump_host: JumpHost) -> None:
    gateway = Hop(
        jump_host.hop.host,
        jump_host.hop.port,
        jump_host.hop.user,
        target.host_key,  # the sidecar's key, not the gateway's
        name="the gateway",
    )
    with (
        Connection(target, identity(keys, "gateway-pin"), gateway=gateway) as connection,
        pytest.raises(HostKeyMismatch, match="host key mismatch for the gateway"),
    ):
        connection.open()
