"""The dev pod's sidecar: Debian's real sshd with sshd-image/'s files, in a pod on the test node.

Certificates come from an OpenSSH CA made with ssh-keygen here; the server's own CA replaces it
in these tests once it exists. What is checked is the sidecar's side of the contract: who gets
in, as whom, where, and which forwards it allows.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from testbed.eventually import eventually
from testbed.node import TestNode

pytestmark = [pytest.mark.kube, pytest.mark.node]

OWNER = "3f1c5a0e-owner-principal"


@dataclass(frozen=True)
class Keys:
    """An OpenSSH CA, a second CA nobody trusts, the sidecar host key and a user key."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def sign(
        self,
        name: str,
        *,
        principals: str | None = OWNER,
        validity: str = "-1m:+1h",
        ca: str = "ca",
    ) -> Path:
        """A user certificate for the user key, as `<name>-cert.pub`; returns the key path."""
        key = self.path(name)
        key.write_bytes(self.path("user").read_bytes())
        key.chmod(0o600)
        key.with_suffix(".pub").write_bytes(self.path("user.pub").read_bytes())
        argv = ["ssh-keygen", "-q", "-s", str(self.path(ca)), "-I", f"test-{name}", "-V", validity]
        if principals is not None:
            argv += ["-n", principals]
        subprocess.run([*argv, str(key.with_suffix(".pub"))], check=True)
        return key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("ssh-keys")
    for name in ("ca", "other-ca", "host", "user"):
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                name,
                "-f",
                str(directory / name),
            ],
            check=True,
        )
    return Keys(directory)


@dataclass(frozen=True)
class Sidecar:
    ip: str
    known_hosts: Path


def secret(name: str, data: dict[str, bytes]) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name),
        data={key: __import__("base64").b64encode(value).decode() for key, value in data.items()},
    )


def sidecar_pod() -> dict[str, object]:
    def secret_volume(name: str) -> dict[str, object]:
        return {"name": name, "secret": {"secretName": name, "defaultMode": 0o440}}

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "space"},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "sshd",
                    "image": "devspace.test/sshd",
                    "args": ["sidecar"],
                    "ports": [{"containerPort": 2222}],
                    "readinessProbe": {"tcpSocket": {"port": 2222}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {
                            "name": "host-key",
                            "mountPath": "/etc/devspace/host-key",
                            "readOnly": True,
                        },
                        {"name": "ca", "mountPath": "/etc/devspace/ca", "readOnly": True},
                        {
                            "name": "principals",
                            "mountPath": "/etc/devspace/principals",
                            "readOnly": True,
                        },
                        {"name": "workspace", "mountPath": "/workspace"},
                    ],
                },
                {  # a second process in the pod, to forward to over its localhost
                    "name": "app",
                    "image": "devspace.test/http-server",
                    "args": ["--bind", "127.0.0.1", "8000"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                },
            ],
            "volumes": [
                secret_volume("host-key"),
                secret_volume("ca"),
                secret_volume("principals"),
                {"name": "workspace", "emptyDir": {}},
            ],
        },
    }


@pytest.fixture(scope="module")
def sidecar(
    kube: client.ApiClient,
    test_node: TestNode,
    keys: Keys,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Sidecar]:
    core = client.CoreV1Api(kube)
    namespace = f"ssh-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=namespace, labels={"pod-security.kubernetes.io/enforce": "restricted"}
            )
        )
    )
    try:
        eventually(
            lambda: core.read_namespaced_service_account("default", namespace),
            what="the default ServiceAccount",
            ignore=(ApiException,),
        )
        host_key = keys.path("host").read_bytes()
        core.create_namespaced_secret(
            namespace, secret("host-key", {"ssh_host_ed25519_key": host_key})
        )
        core.create_namespaced_secret(
            namespace, secret("ca", {"ca.pub": keys.path("ca.pub").read_bytes()})
        )
        core.create_namespaced_secret(
            namespace, secret("principals", {"principals": f"{OWNER}\n".encode()})
        )
        core.create_namespaced_pod(namespace, sidecar_pod())

        def ready_ip() -> str | None:
            pod = core.read_namespaced_pod("space", namespace)
            conditions = {c.type: c.status for c in pod.status.conditions or []}
            return pod.status.pod_ip if conditions.get("Ready") == "True" else None

        ip = eventually(ready_ip, what="the sidecar to be ready", timeout=30)
        known_hosts = tmp_path_factory.mktemp("known") / "known_hosts"
        known_hosts.write_text(f"{ip} {keys.path('host.pub').read_text()}")
        yield Sidecar(ip, known_hosts)
    finally:
        core.delete_namespace(namespace)


def ssh(
    sidecar: Sidecar, key: Path, *args: str, user: str = "dev"
) -> subprocess.CompletedProcess[str]:
    """Run OpenSSH's client against the sidecar, pinning its host key."""
    return subprocess.run(
        [
            "ssh",
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={sidecar.known_hosts}",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "ExitOnForwardFailure=yes",
            "-i",
            str(key),
            "-p",
            "2222",
            f"{user}@{sidecar.ip}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


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
