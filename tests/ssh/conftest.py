"""Fixtures for the SSH tests: Debian's real sshd with sshd-image/'s files, as the sidecar of
a pod on the test node, and OpenSSH's real client against it.

Module fixtures (each test module gets its own pod, in its own namespace):
- ``keys``: an OpenSSH CA made with ssh-keygen, a second CA nobody trusts, the sidecar's
  host key and a user key (``Keys``; ``keys.sign(...)`` makes certificates).
- ``space_secrets``: what goes into the pod's Secrets (``SpaceSecrets``: host key, trusted CA
  keys, principals), as the reconciler would write them: ``keys``'s host key and CA and the
  principal ``OWNER``, unless a module overrides the fixture.
- ``sidecar``: the running sidecar (``Sidecar``: its pod IP and a known_hosts pinning it).

Helpers: ``ssh(sidecar, key, *args, certificate=None, user="dev")`` runs OpenSSH's client.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from testbed.eventually import eventually
from testbed.node import TestNode

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


def keygen(path: Path, kind: str = "ed25519", bits: int | None = None) -> Path:
    """A new passphrase-less key pair made by ssh-keygen at `path` (and `path.pub`)."""
    size = ["-b", str(bits)] if bits else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *size, "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("ssh-keys")
    for name in ("ca", "other-ca", "host", "user"):
        keygen(directory / name)
    return Keys(directory)


@dataclass(frozen=True)
class SpaceSecrets:
    """The content of a space's Secrets, which the sidecar mounts."""

    host_private_key: bytes
    host_public_key: str
    """The host key's public line, which the client pins."""
    trusted_ca_keys: str
    """The `TrustedUserCAKeys` file."""
    principals: Sequence[str]


@pytest.fixture(scope="module")
def space_secrets(keys: Keys) -> SpaceSecrets:
    return SpaceSecrets(
        host_private_key=keys.path("host").read_bytes(),
        host_public_key=keys.path("host.pub").read_text(),
        trusted_ca_keys=keys.path("ca.pub").read_text(),
        principals=[OWNER],
    )


@dataclass(frozen=True)
class Sidecar:
    ip: str
    known_hosts: Path


def secret(name: str, data: dict[str, bytes]) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name),
        data={key: base64.b64encode(value).decode() for key, value in data.items()},
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
    space_secrets: SpaceSecrets,
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
        host_key = space_secrets.host_private_key
        principals = "".join(f"{p}\n" for p in space_secrets.principals).encode()
        core.create_namespaced_secret(
            namespace, secret("host-key", {"ssh_host_ed25519_key": host_key})
        )
        core.create_namespaced_secret(
            namespace, secret("ca", {"ca.pub": space_secrets.trusted_ca_keys.encode()})
        )
        core.create_namespaced_secret(namespace, secret("principals", {"principals": principals}))
        core.create_namespaced_pod(namespace, sidecar_pod())

        def ready_ip() -> str | None:
            pod = core.read_namespaced_pod("space", namespace)
            conditions = {c.type: c.status for c in pod.status.conditions or []}
            return pod.status.pod_ip if conditions.get("Ready") == "True" else None

        ip = eventually(ready_ip, what="the sidecar to be ready", timeout=30)
        known_hosts = keys.path("known_hosts")
        known_hosts.write_text(f"{ip} {space_secrets.host_public_key.strip()}\n")
        yield Sidecar(ip, known_hosts)
    finally:
        core.delete_namespace(namespace)


def ssh(
    sidecar: Sidecar,
    key: Path,
    *args: str,
    certificate: Path | None = None,
    user: str = "dev",
) -> subprocess.CompletedProcess[str]:
    """Run OpenSSH's client against the sidecar, pinning its host key.

    `certificate`, if given, is offered with `key` (`-o CertificateFile`); otherwise ssh
    offers `<key>-cert.pub` if it exists.
    """
    options = ["-o", f"CertificateFile={certificate}"] if certificate else []
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
            *options,
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
