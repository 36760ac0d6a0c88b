"""`devspace.remote.connect`: two hops, through the real gateway, to the user's own sidecar —
everything it needs read from the real server's API (issue 5's two-hop test). Each test runs
with the gateway hop made by OpenSSH (`devspace.jump`, the default) and by paramiko."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from devspace.api import Api
from devspace.certificates import ensure_identity, key_directory
from devspace.errors import SshError
from devspace.remote import connect, gateway_hop, sidecar_hop, space_path
from devspace.ssh import Connection, HostKeyMismatch
from devspace_server.ca import new_host_key

from .conftest import PORT, SPACE, Bed, Result

pytestmark = [pytest.mark.kube, pytest.mark.node]


@pytest.fixture(params=["openssh", "paramiko"], autouse=True)
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Who makes the gateway hop: every test here runs once with each."""
    monkeypatch.setenv("DEVSPACE_SSH_CLIENT", request.param)
    return str(request.param)


def test_connect_reaches_the_users_own_pod_through_the_gateway(bed: Bed, client: str) -> None:
    with connect(Api(bed.url), SPACE) as connection:
        result = connection.run("echo $USER $PWD; hostname -I")
        if client == "paramiko":
            # Two transports: the gateway's over TCP, the sidecar's over a direct-tcpip channel.
            outer, inner = connection._transports
            assert outer.getpeername()[0] == bed.gateway_ip
            assert isinstance(inner.sock, paramiko.Channel)
        else:
            # One paramiko transport, to the sidecar, over `ssh -W` to the gateway.
            (inner,) = connection._transports
            assert isinstance(inner.sock, socket.socket)
            assert connection._jump is not None
            assert connection._jump.argv[-1] == bed.gateway_ip
            assert connection._jump.process.poll() is None
    assert result.exit_status == 0, result.stderr
    user, cwd, *addresses = result.stdout.decode().split()
    assert (user, cwd) == ("dev", "/workspace")
    assert bed.alice.pod_ip in addresses  # alice's pod, not bob's


def test_the_certificate_comes_from_the_server_and_is_kept(bed: Bed) -> None:
    api = Api(bed.url)
    first = ensure_identity(api)
    assert first.certificate.parent == key_directory(bed.url)
    before = first.certificate.read_bytes()
    _, certificate = first.load()
    assert certificate.valid_principals == [bed.alice.user_id.encode()]  # the immutable id
    again = ensure_identity(api)  # still valid for hours: not asked for again
    assert again.certificate.read_bytes() == before


def test_another_users_pod_is_refused_by_the_gateway(bed: Bed) -> None:
    api = Api(bed.url)
    bobs = sidecar_hop(
        {
            "name": "bobs",
            "phase": "running",
            "ready": True,
            "pod_ip": bed.bob.pod_ip,
            "host_key": {"public_key": bed.bob.host_public_key},
        }
    )
    connection = Connection(bobs, ensure_identity(api), gateway=gateway_hop(api))
    with pytest.raises(SshError, match="refused to connect to space bobs") as caught:
        connection.open()
    assert "administratively prohibited" in str(caught.value).lower()
    # The same path works for alice's own pod, so the refusal was about the owner.
    own = sidecar_hop(api.call("GET", space_path(SPACE)))
    with Connection(own, ensure_identity(api), gateway=gateway_hop(api)) as connection:
        assert connection.run("true").exit_status == 0


def test_a_wrong_gateway_host_key_aborts_before_authenticating(bed: Bed, tmp_path: Path) -> None:
    impostor = tmp_path / "impostor.pub"
    impostor.write_text(new_host_key().public_line + "\n")
    with (
        bed.serving(f"{bed.gateway_ip}:{PORT}", impostor),
        pytest.raises(HostKeyMismatch) as caught,
    ):
        connect(Api(bed.url), SPACE).open()
    message = str(caught.value)
    assert "host key mismatch for the gateway" in message
    assert "do not connect" in message
    assert caught.value.exit_code == 5


def test_the_cli_reports_a_wrong_gateway_key_without_a_traceback(
    bed: Bed, tmp_path: Path, devspace: Callable[..., Result]
) -> None:
    impostor = tmp_path / "impostor.pub"
    impostor.write_text(new_host_key().public_line + "\n")
    with bed.serving(f"{bed.gateway_ip}:{PORT}", impostor):
        result = devspace("exec", SPACE, "--", "true")
    assert result.code == 5
    assert "host key mismatch for the gateway: expected SHA256:" in result.err
    assert "Traceback" not in result.err


def test_the_cli_reports_a_gateway_that_does_not_answer(
    bed: Bed, keys_file_free_port: tuple[Path, int], devspace: Callable[..., Result]
) -> None:
    keys, port = keys_file_free_port
    with bed.serving(f"127.0.0.1:{port}", keys):
        result = devspace("exec", SPACE, "--", "true")
    assert result.code == 5
    assert f"connection refused by the gateway at 127.0.0.1:{port}" in result.err
    assert "Traceback" not in result.err


@pytest.fixture
def keys_file_free_port(bed: Bed) -> tuple[Path, int]:
    """The gateway's real keys file, and a local port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return bed.gateway_keys_file, int(probe.getsockname()[1])
