"""The dev pod's sidecar: Debian's real sshd with sshd-image/'s files, in a pod on the test node.

Certificates here come from an OpenSSH CA made with ssh-keygen, so that every kind of bad
certificate can be made on demand; `test_certificates_from_server.py` checks the server's CA
against the same sidecar. What is checked is the sidecar's side of the contract: who gets in,
as whom, where, and which forwards it allows.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from testbed.eventually import eventually
from testbed.node import TestNode

from .conftest import Keys, Sidecar, ssh

pytestmark = [pytest.mark.kube, pytest.mark.node]


def test_owner_certificate_gets_a_shell_as_dev_in_the_workspace(
    sidecar: Sidecar, keys: Keys
) -> None:
    result = ssh(
        sidecar, keys.sign("owner"), "id -un; pwd; touch made-over-ssh; ls -l made-over-ssh"
    )
    assert result.returncode == 0, result.stderr
    name, cwd, listing = result.stdout.splitlines()
    assert (name, cwd) == ("dev", "/workspace")
    assert " dev dev " in listing


def test_sftp_starts_in_the_workspace(sidecar: Sidecar, keys: Keys, tmp_path: Path) -> None:
    upload = tmp_path / "hello.txt"
    upload.write_text("hello from sftp\n")
    batch = tmp_path / "batch"
    batch.write_text(f"pwd\nput {upload} hello.txt\n")
    result = subprocess.run(
        [
            "sftp",
            "-F",
            "none",
            "-b",
            str(batch),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={sidecar.known_hosts}",
            "-i",
            str(keys.sign("sftp")),
            "-P",
            "2222",
            f"dev@{sidecar.ip}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Remote working directory: /workspace" in result.stdout
    assert (
        ssh(sidecar, keys.sign("check"), "cat /workspace/hello.txt").stdout == "hello from sftp\n"
    )


REFUSED = {  # case -> how the certificate is signed
    "wrong-principal": {"principals": "someone-else"},
    "no-principal": {"principals": None},
    "expired": {"validity": "-2h:-1h"},
    "not-yet-valid": {"validity": "+1h:+2h"},
    "wrong-ca": {"ca": "other-ca"},
}


@pytest.mark.parametrize("case", REFUSED)
def test_certificates_that_must_not_get_in(sidecar: Sidecar, keys: Keys, case: str) -> None:
    key = keys.sign(case, **REFUSED[case])  # type: ignore[arg-type]
    result = ssh(sidecar, key, "true")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_a_plain_key_without_certificate_does_not_get_in(sidecar: Sidecar, keys: Keys) -> None:
    result = ssh(sidecar, keys.path("user"), "true")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_only_the_login_user_dev_is_possible(sidecar: Sidecar, keys: Keys) -> None:
    result = ssh(sidecar, keys.sign("as-root"), "true", user="root")
    assert result.returncode == 255


def free_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_local_forward_reaches_the_pods_own_localhost(sidecar: Sidecar, keys: Keys) -> None:
    port = free_local_port()
    script = f"curl -s --max-time 5 http://127.0.0.1:{port}/ | head -c 200"
    forward = subprocess.Popen(
        [
            "ssh",
            "-F",
            "none",
            "-N",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            f"UserKnownHostsFile={sidecar.known_hosts}",
            "-i",
            str(keys.sign("forward")),
            "-L",
            f"127.0.0.1:{port}:127.0.0.1:8000",
            "-p",
            "2222",
            f"dev@{sidecar.ip}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = eventually(
            lambda: (
                subprocess.run(
                    ["sh", "-c", script], capture_output=True, text=True, check=False
                ).stdout
            ),
            what="the forwarded port to answer",
            timeout=15,
        )
        assert "Directory listing" in body
    finally:
        forward.terminate()
        forward.communicate(timeout=5)


def test_forwards_anywhere_but_the_pod_itself_are_refused(
    sidecar: Sidecar, keys: Keys, test_node: TestNode
) -> None:
    # The node's bridge address is this host as seen from the pod: routable, but not allowed.
    result = ssh(sidecar, keys.sign("escape"), "-W", f"{test_node.gateway}:22")
    assert result.returncode == 255
    assert "administratively prohibited" in result.stderr


def test_reverse_forwards_listen_only_on_the_pods_loopback(sidecar: Sidecar, keys: Keys) -> None:
    key = keys.sign("reverse")
    public = ssh(sidecar, key, "-R", "0.0.0.0:9000:127.0.0.1:22", "true")
    assert public.returncode == 255
    assert "remote port forwarding failed" in public.stderr
    loopback = ssh(sidecar, key, "-R", "127.0.0.1:9000:127.0.0.1:22", "true")
    assert loopback.returncode == 0, loopback.stderr
