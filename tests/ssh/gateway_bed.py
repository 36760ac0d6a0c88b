"""The pieces of the gateway's end-to-end tests (test_gateway.py): a devspace server over real
HTTP, the sidecar and gateway pods, and OpenSSH's client configured for one person.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from kubernetes import client
from kubernetes.client.rest import ApiException
from server.oauth_flows import bearer, make_token
from werkzeug.serving import BaseWSGIServer, make_server

from devspace_server import accounts
from devspace_server.ca import new_host_key
from devspace_server.context import state
from devspace_server.models import Role, Space, User
from testbed.eventually import eventually
from testbed.pods import latest_attempt

from .conftest import keygen, secret, sidecar_pod

PORT = 2222


class LiveServer:
    """A devspace app over real HTTP on `host`, which can be stopped and started again."""

    def __init__(self, app: Flask, host: str) -> None:
        self.app = app
        self.host = host
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        # Looked up per request, so that a test can swap in an app with another secret.
        return self.app(environ, start_response)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None


@dataclass
class Person:
    """A user with an SSH key and a certificate for it from the API, and their space."""

    user_id: str
    key: Path
    host_public_key: str = ""
    """The sidecar's host key line, as the API publishes it."""
    pod_ip: str = ""
    space_id: str = ""


def make_person(app: Flask, directory: Path, username: str) -> Person:
    with app.app_context(), state().sessions() as session:
        user = accounts.create_user(session, username=username, role=Role.USER, password=None)
        session.commit()
    key = keygen(directory / username)
    response = app.test_client().post(
        "/api/v1/ssh/certificates",
        json={"public_key": key.with_suffix(".pub").read_text()},
        headers=bearer(make_token(app, user, "ssh")),
    )
    assert response.status_code == 200, response.get_json()
    issued = response.get_json()
    assert issued["principals"] == [user.id]
    Path(f"{key}-cert.pub").write_text(issued["certificate"] + "\n")
    return Person(user.id, key)


def make_namespace(core: client.CoreV1Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    eventually(
        lambda: core.read_namespaced_service_account("default", name),
        what="the default ServiceAccount",
        ignore=(ApiException,),
    )
    return name


def run_pod(
    core: client.CoreV1Api, namespace: str, secrets: dict[str, dict[str, bytes]], pod: Any
) -> str:
    """Create `secrets` and `pod` in `namespace`; returns the pod's IP once it is ready."""
    for name, data in secrets.items():
        core.create_namespaced_secret(namespace, secret(name, data))
    core.create_namespaced_pod(namespace, pod)
    name = pod["metadata"]["name"]

    def ready_ip() -> str | None:
        status = core.read_namespaced_pod(name, namespace).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return str(status.pod_ip) if conditions.get("Ready") == "True" else None

    return eventually(ready_ip, what=f"pod {namespace}/{name} to be ready", timeout=30)


def start_space(
    core: client.CoreV1Api, live: LiveServer, person: Person, namespaces: list[str]
) -> None:
    """A running sidecar for `person`, and their `Space` row saying so."""
    host = new_host_key()
    with live.app.app_context():
        ca = state().config.ssh_ca
    assert ca is not None
    namespace = make_namespace(core, "gw-space")
    namespaces.append(namespace)
    person.pod_ip = run_pod(
        core,
        namespace,
        {
            "host-key": {"ssh_host_ed25519_key": host.private_openssh.encode()},
            "ca": {"ca.pub": ca.trusted_keys_file().encode()},
            "principals": {"principals": f"{person.user_id}\n".encode()},
        },
        sidecar_pod(),
    )
    person.host_public_key = host.public_line
    with live.app.app_context(), state().sessions() as session:
        space = Space(
            owner_id=person.user_id,
            name="work",
            image="devspace.test/shell",
            storage="1Gi",
            host_private_key=host.private_openssh,
            host_public_key=host.public_line,
            host_key_fingerprint=host.fingerprint,
            phase="running",
            reason="",
            pod_ip=person.pod_ip,
            ready=True,
        )
        session.add(space)
        session.commit()
        person.space_id = space.id


def gateway_pod() -> dict[str, object]:
    """The gateway as its Deployment would run it: non-root, no privileges, no token."""

    def mount(name: str) -> dict[str, object]:
        return {"name": name, "mountPath": f"/etc/devspace/{name}", "readOnly": True}

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gateway", "labels": {"app.kubernetes.io/component": "gateway"}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "sshd",
                    "image": "devspace.test/sshd",
                    "args": ["gateway"],
                    "ports": [{"containerPort": PORT}],
                    "readinessProbe": {"tcpSocket": {"port": PORT}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [mount("host-key"), mount("ca"), mount("gateway")],
                }
            ],
            "volumes": [
                {"name": name, "secret": {"secretName": name, "defaultMode": 0o440}}
                for name in ("host-key", "ca", "gateway")
            ],
        },
    }


@dataclass(frozen=True)
class Gateway:
    ip: str
    host_public_key: str
    log: Path
    """sshd's log (stderr) in the gateway container."""
    namespace: str = ""

    def host_keys_file(self, directory: Path) -> Path:
        """A file in `directory` with the gateway's public host key, for
        DEVSPACE_GATEWAY_HOST_KEYS_FILE."""
        path = directory / "gateway-host-keys.pub"
        path.write_text(f"{self.host_public_key}\n")
        return path

    @property
    def address(self) -> str:
        """`ip:port`, for DEVSPACE_GATEWAY_ADDRESS."""
        return f"{self.ip}:{PORT}"


def start_gateway(
    core: client.CoreV1Api,
    *,
    trusted_ca_keys: str,
    server_url: str,
    secret: str,
    node_directory: Path,
    prefix: str = "gw",
) -> Gateway:
    """The gateway pod with a fresh host key, in a namespace of its own (delete
    `Gateway.namespace` when done), trusting `trusted_ca_keys` (a TrustedUserCAKeys file) and
    asking `server_url` with the shared `secret`; returns once it is ready."""
    host = new_host_key()
    namespace = make_namespace(core, prefix)
    try:
        ip = run_pod(
            core,
            namespace,
            {
                "host-key": {"ssh_host_ed25519_key": host.private_openssh.encode()},
                "ca": {"ca.pub": trusted_ca_keys.encode()},
                "gateway": {"server-url": server_url.encode(), "secret": secret.encode()},
            },
            gateway_pod(),
        )
    except BaseException:
        core.delete_namespace(namespace)
        raise
    run = latest_attempt(node_directory, namespace, "gateway", "sshd")
    return Gateway(ip, host.public_line, run / "log", namespace)


def trusted_ca_keys(live: LiveServer) -> str:
    """The TrustedUserCAKeys file of `live`'s SSH CA."""
    with live.app.app_context():
        ca = state().config.ssh_ca
    assert ca is not None
    return ca.trusted_keys_file()


@dataclass(frozen=True)
class Client:
    """OpenSSH's client configured for one person: their key and certificate, all host keys
    pinned, options in a file so that they apply to the `-J` jump too."""

    config: Path
    gateway: Gateway

    def __call__(
        self, *args: str, timeout: float = 30, program: str = "ssh"
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [program, "-F", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    @property
    def jump(self) -> str:
        return f"devspace@{self.gateway.ip}"

    def shell(self, person: Person, command: str = "echo $USER $PWD") -> Any:
        """`ssh -J devspace@gateway dev@<person's pod> command`."""
        return self("-J", self.jump, f"dev@{person.pod_ip}", command)


@contextmanager
def changed(
    app: Flask, model: type[User] | type[Space], key: str, **changes: Any
) -> Iterator[None]:
    """Columns of one row changed for the duration, then put back."""
    with app.app_context(), state().sessions() as session:
        row = session.get(model, key)
        assert row is not None
        before = {name: getattr(row, name) for name in changes}
        for name, value in changes.items():
            setattr(row, name, value)
        session.commit()
    try:
        yield
    finally:
        with app.app_context(), state().sessions() as session:
            row = session.get(model, key)
            assert row is not None
            for name, value in before.items():
                setattr(row, name, value)
            session.commit()


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def first_bytes(port: int) -> bytes:
    """What a forwarded port says first, or b"" if the gateway closed it; within 5 s."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        try:
            data = connection.recv(64)
        except ConnectionResetError:
            data = b""
    assert time.monotonic() - started < 5
    return data


def everything_until_closed(connection: socket.socket, *, deadline: float) -> bytes:
    """All `connection` received until the peer closed it; fails at `deadline`."""
    received = b""
    connection.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        while chunk := connection.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received
