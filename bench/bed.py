"""The bench's test bed: a control plane, the test node, and one sidecar pod with real sshd.

The pod is the one tests/ssh/conftest.py makes (same spec, same Secrets, certificates from an
ssh-keygen CA), so the bench measures what the tests prove. OpenSSH's client and devspace's
`Connection` both reach it with the same user certificate and the same pinned host key.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))  # the test bed and the sidecar's pod spec

# isort: off
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from devspace.ssh import Connection, Hop, Identity, PinnedHostKey  # noqa: E402
from ssh.conftest import OWNER, keygen, secret, sidecar_pod  # noqa: E402
from testbed.cluster import ControlPlane  # noqa: E402
from testbed.eventually import eventually  # noqa: E402
from testbed.node import TestNode  # noqa: E402
# isort: on

if TYPE_CHECKING:
    from bench.gateway import GatewayRoute


@dataclass(frozen=True)
class Sidecar:
    """The running sidecar and how to reach it, with OpenSSH or with devspace."""

    ip: str
    directory: Path
    """Holds `user` (key), `user-cert.pub`, `host.pub` and `known_hosts`."""
    route: GatewayRoute | None = None
    """The way through the real gateway, when the bed was asked for one."""

    @property
    def key(self) -> Path:
        return self.directory / "user"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def connection(self) -> Connection:
        """A new, not yet opened devspace connection to the sidecar (one hop)."""
        pin = PinnedHostKey.published((self.directory / "host.pub").read_text())
        hop = Hop(self.ip, 2222, "dev", pin, name="bench sidecar")
        return Connection(hop, Identity(self.key, self.directory / "user-cert.pub"))

    def ssh_options(self) -> list[str]:
        """OpenSSH client options for the sidecar: same key, certificate and pinned host key."""
        return [
            "-F", "none",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-i", str(self.key),
        ]  # fmt: skip

    def run(self, command: str) -> None:
        """Run a shell command in the pod with OpenSSH (set-up and clean-up, never measured)."""
        argv = ["ssh", *self.ssh_options(), "-p", "2222", f"dev@{self.ip}", command]
        subprocess.run(argv, check=True, capture_output=True, timeout=300)


def _keys(directory: Path) -> None:
    for name in ("ca", "host", "user"):
        keygen(directory / name)
    subprocess.run(
        [
            *("ssh-keygen", "-q", "-s", str(directory / "ca"), "-I", "bench", "-V", "-1m:+4h"),
            *("-n", OWNER, str(directory / "user.pub")),
        ],
        check=True,
    )


def _start_pod(kube: client.ApiClient, directory: Path) -> str:
    core = client.CoreV1Api(kube)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels=labels))
    )
    eventually(
        lambda: core.read_namespaced_service_account("default", namespace),
        what="the default ServiceAccount",
        ignore=(ApiException,),
    )
    host_key = (directory / "host").read_bytes()
    core.create_namespaced_secret(namespace, secret("host-key", {"ssh_host_ed25519_key": host_key}))
    core.create_namespaced_secret(
        namespace, secret("ca", {"ca.pub": (directory / "ca.pub").read_bytes()})
    )
    core.create_namespaced_secret(
        namespace, secret("principals", {"principals": f"{OWNER}\n".encode()})
    )
    core.create_namespaced_pod(namespace, sidecar_pod())

    def ready_ip() -> str | None:
        pod = core.read_namespaced_pod("space", namespace)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod.status.pod_ip if conditions.get("Ready") == "True" else None

    return str(eventually(ready_ip, what="the sidecar to be ready", timeout=60))


@contextmanager
def sidecar_test_bed(*, gateway: bool = False) -> Iterator[Sidecar]:
    """Start the control plane, the test node and a sidecar pod (and with `gateway`, a devspace
    server and the gateway pod in front of it); tear all down on exit.

    Their directory (logs, etcd's data) is removed afterwards, unless something failed: then
    its path is printed to stderr for the logs.
    Raises testbed.process.StartError when a component does not start.
    """
    directory = Path(tempfile.mkdtemp(prefix="devspace-bench-"))
    keys = directory / "keys"
    keys.mkdir()
    _keys(keys)
    try:
        with ExitStack() as stack:
            plane = ControlPlane.start(directory / "control-plane")
            stack.callback(plane.stop)
            node = TestNode.start(kubeconfig=plane.admin_kubeconfig, directory=directory / "node")
            stack.callback(node.stop)
            kube = config.new_client_from_config(str(plane.admin_kubeconfig))
            stack.callback(kube.close)
            ip = _start_pod(kube, keys)
            host = (keys / "host.pub").read_text().strip()
            (keys / "known_hosts").write_text(f"{ip} {host}\n[{ip}]:2222 {host}\n")
            route = None
            if gateway:
                from bench.gateway import gateway_route  # noqa: PLC0415 - needs the server

                route = stack.enter_context(
                    gateway_route(kube, node, ip, keys, directory / "gateway")
                )
            yield Sidecar(ip, keys, route)
    except BaseException:
        print(f"bench: the test bed's logs are in {directory}", file=sys.stderr)
        raise
    shutil.rmtree(directory, ignore_errors=True)
