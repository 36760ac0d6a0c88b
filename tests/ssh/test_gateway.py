"""The SSH gateway end to end: real OpenSSH on both ends, a real devspace server deciding.

Module fixtures (one of each for the module):
- ``live``: the devspace server over real HTTP on the test node's bridge address (the host
  as pods see it), so the gateway pod's principals command reaches it; it can be stopped,
  started again, and made to serve another app (``LiveServer``).
- ``alice`` and ``bob``: users with a certificate from ``POST /api/v1/ssh/certificates``
  (``Person``), each with a running space: a sidecar pod (``devspace.test/sshd sidecar``)
  trusting the server's CA for its owner only, and a `Space` row holding its pod IP and
  phase ``running``, written directly as the reconciler would write them (the reconciler
  itself is proven in tests/reconcile/test_spaces_end_to_end.py; running it here would
  cost a minute per space and prove nothing more about the gateway).
- ``gateway``: the gateway pod (``devspace.test/sshd gateway``, uid 10001) with its host
  key, the CA and ``/etc/devspace/gateway/{server-url,secret}`` mounted from Secrets.

Every ssh run pins every host key (``StrictHostKeyChecking yes``): gateway and sidecars.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from host_key_encryption import fresh_host_key_encryption
from kubernetes import client

from devspace_server import db
from devspace_server.app import create_app
from devspace_server.config import load_config
from devspace_server.context import state
from devspace_server.models import Space, User
from testbed.eventually import eventually
from testbed.node import TestNode

from .conftest import keygen
from .gateway_bed import (
    PORT,
    Client,
    Gateway,
    LiveServer,
    Person,
    accepts,
    changed,
    everything_until_closed,
    first_bytes,
    free_local_port,
    make_person,
    start_gateway,
    start_space,
    trusted_ca_keys,
)

pytestmark = [pytest.mark.kube, pytest.mark.node]


SECRET_KEY = "gateway-test-secret-key-0123456789-abcdefgh"  # noqa: S105 - a test key


GATEWAY_SECRET = "gateway-shared-secret-0123456789-ABCDEFGHIJ"  # noqa: S105 - a test secret


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, test_node: TestNode) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("gateway-server")
    url = f"sqlite:///{directory / 'devspace.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    engine.dispose()
    ca_key = keygen(directory / "ca")
    config = load_config(
        {
            "DEVSPACE_DATA_DIR": str(directory),
            "DEVSPACE_DATABASE_URL": url,
            "DEVSPACE_SECRET_KEY": SECRET_KEY,
            **fresh_host_key_encryption(),
            "DEVSPACE_PUBLIC_URL": "http://localhost:8080",
            "DEVSPACE_SSH_CA_KEY_FILE": str(ca_key),
            "DEVSPACE_GATEWAY_SECRET": GATEWAY_SECRET,
        }
    )
    server = LiveServer(create_app(config), test_node.gateway)
    yield server
    server.stop()
    with server.app.app_context():
        state().engine.dispose()


@pytest.fixture(scope="module")
def people(
    live: LiveServer, kube: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Person, Person]]:
    core = client.CoreV1Api(kube)
    directory = tmp_path_factory.mktemp("gateway-people")
    alice, bob = make_person(live.app, directory, "alice"), make_person(live.app, directory, "bob")
    namespaces: list[str] = []
    try:
        start_space(core, live, alice, namespaces)
        start_space(core, live, bob, namespaces)
        yield alice, bob
    finally:
        for namespace in namespaces:
            core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def alice(people: tuple[Person, Person]) -> Person:
    return people[0]


@pytest.fixture(scope="module")
def bob(people: tuple[Person, Person]) -> Person:
    return people[1]


@pytest.fixture(scope="module")
def gateway(live: LiveServer, kube: client.ApiClient, test_node: TestNode) -> Iterator[Gateway]:
    core = client.CoreV1Api(kube)
    found = start_gateway(
        core,
        trusted_ca_keys=trusted_ca_keys(live),
        server_url=live.url,
        secret=GATEWAY_SECRET,
        node_directory=test_node.directory,
    )
    yield found
    core.delete_namespace(found.namespace)


@pytest.fixture(scope="module")
def ssh_as(
    gateway: Gateway, people: tuple[Person, Person], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Person], Client]:
    directory = tmp_path_factory.mktemp("gateway-ssh")
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(
        "".join(
            f"[{ip}]:{PORT} {key}\n"
            for ip, key in [
                (gateway.ip, gateway.host_public_key),
                *((p.pod_ip, p.host_public_key) for p in people),
            ]
        )
    )

    def make(person: Person) -> Client:
        config = directory / f"config-{person.user_id}"
        config.write_text(
            "Host *\n"
            f"  Port {PORT}\n"
            "  BatchMode yes\n"
            "  IdentitiesOnly yes\n"
            f"  IdentityFile {person.key}\n"
            f"  CertificateFile {person.key}-cert.pub\n"
            "  StrictHostKeyChecking yes\n"
            f"  UserKnownHostsFile {known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  ConnectTimeout 5\n"
            "  ExitOnForwardFailure yes\n"
        )
        return Client(config, gateway)

    return make


def test_a_certificate_reaches_its_owners_pod_through_the_gateway(
    ssh_as: Callable[[Person], Client], alice: Person
) -> None:
    result = ssh_as(alice).shell(alice)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "dev /workspace"


def test_another_users_pod_is_refused_at_the_gateway(
    ssh_as: Callable[[Person], Client], alice: Person, bob: Person
) -> None:
    result = ssh_as(alice).shell(bob)
    assert result.returncode == 255
    assert "administratively prohibited" in result.stderr
    # Bob's own certificate opens it: the refusal was about Alice, not the pod.
    assert ssh_as(bob).shell(bob).returncode == 0


def test_another_users_sidecar_refuses_the_certificate_with_the_gateway_bypassed(
    ssh_as: Callable[[Person], Client], alice: Person, bob: Person
) -> None:
    result = ssh_as(alice)(f"dev@{bob.pod_ip}", "true")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_local_forwards_reach_only_the_owners_sidecar(
    ssh_as: Callable[[Person], Client],
    people: tuple[Person, Person],
    gateway: Gateway,
    live: LiveServer,
    kube: client.ApiClient,
) -> None:
    alice, bob = people
    kube_api = urlsplit(kube.configuration.host)
    targets = {
        "own sidecar": (alice.pod_ip, PORT),
        "another pod's sidecar": (bob.pod_ip, PORT),
        "another port of the own pod": (alice.pod_ip, 8000),
        "the devspace server": (live.host, live.port),
        "the Kubernetes API server": (kube_api.hostname or "", kube_api.port or 443),
        "cloud metadata": ("169.254.169.254", 80),
        "the gateway's own localhost": ("127.0.0.1", PORT),
        "the gateway's own address": (gateway.ip, PORT),
    }
    ports = {name: free_local_port() for name in targets}
    forwards = [
        arg
        for name, (host, port) in targets.items()
        for arg in ("-L", f"127.0.0.1:{ports[name]}:{host}:{port}")
    ]
    args = ["ssh", "-F", str(ssh_as(alice).config), "-N", *forwards, ssh_as(alice).jump]
    tunnel = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        first = ports["own sidecar"]
        eventually(lambda: accepts(first), what="the forwards to listen", timeout=15)
        answers = {name: first_bytes(ports[name]) for name in targets}
    finally:
        tunnel.terminate()
        try:
            _, stderr = tunnel.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            tunnel.kill()
            _, stderr = tunnel.communicate()
        print(stderr)  # shown with a failure, to tell which forward failed how
    assert answers.pop("own sidecar").startswith(b"SSH-2.0-OpenSSH")
    # Each refused at once with nothing passed on: the gateway never connected (a connect
    # to 169.254.169.254 would hang until a timeout instead).
    assert answers == dict.fromkeys(answers, b""), answers
    # sshd's reason code for a `permitopen` denial; a failed connect says "connect failed".
    assert stderr.count("administratively prohibited") == len(answers), stderr
    assert "connect failed" not in stderr
    # sshd's own word that it denied the metadata address rather than trying it.
    assert (
        "to connect to host 169.254.169.254 port 80, but the request was denied"
        in gateway.log.read_text()
    )


@pytest.mark.parametrize(
    ("what", "options", "command"),
    [
        ("shell", ["-T"], []),
        ("shell with a terminal", ["-tt"], []),
        ("exec", [], ["id"]),
        ("agent forwarding", ["-A"], ["true"]),
    ],
)
def test_the_gateway_refuses_shell_and_exec(
    ssh_as: Callable[[Person], Client],
    alice: Person,
    what: str,
    options: list[str],
    command: list[str],
) -> None:
    client_ = ssh_as(alice)
    result = client_(*options, client_.jump, *command, timeout=20)
    assert result.returncode == 255, (what, result)
    # MaxSessions 0: the session channel itself is refused (sshd gives the reason code
    # "connect failed" for it), before any command, terminal or agent request is read.
    assert "channel 0: open failed" in result.stderr, (what, result.stderr)
    assert result.stdout == ""


def test_the_gateway_refuses_remote_forwards(
    ssh_as: Callable[[Person], Client], alice: Person
) -> None:
    client_ = ssh_as(alice)
    result = client_("-N", "-R", "127.0.0.1:0:127.0.0.1:22", client_.jump, timeout=20)
    assert result.returncode == 255, result
    assert "remote port forwarding failed" in result.stderr, result.stderr


def test_the_gateway_refuses_sftp(ssh_as: Callable[[Person], Client], alice: Person) -> None:
    client_ = ssh_as(alice)
    result = client_("-b", "-", client_.jump, program="sftp", timeout=20)
    assert result.returncode != 0
    assert "Connection closed" in result.stderr or "prohibited" in result.stderr, result.stderr


def test_a_disabled_user_is_refused_at_the_next_login(
    ssh_as: Callable[[Person], Client], alice: Person, live: LiveServer
) -> None:
    with changed(live.app, User, alice.user_id, disabled=True):
        result = ssh_as(alice).shell(alice)
        assert result.returncode == 255
        assert "Permission denied" in result.stderr
    assert ssh_as(alice).shell(alice).returncode == 0


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "stopped", "pod_ip": None, "ready": False},
        # The reconciler has not yet cleared the IP: the phase alone decides.
        {"phase": "stopped"},
        {"stopped": True},
    ],
    ids=["stopped", "stopped-with-stale-ip", "stop-requested"],
)
def test_a_stopped_space_is_no_longer_reachable(
    ssh_as: Callable[[Person], Client], alice: Person, live: LiveServer, status: dict[str, Any]
) -> None:
    with changed(live.app, Space, alice.space_id, **status):
        result = ssh_as(alice).shell(alice)
        assert result.returncode == 255
        assert "Permission denied" in result.stderr
    assert ssh_as(alice).shell(alice).returncode == 0


def test_the_gateway_fails_closed_when_the_server_is_unreachable(
    ssh_as: Callable[[Person], Client], alice: Person, live: LiveServer
) -> None:
    live.stop()
    try:
        started = time.monotonic()
        result = ssh_as(alice).shell(alice)
        assert result.returncode == 255
        assert "Permission denied" in result.stderr
        assert time.monotonic() - started < 15
    finally:
        live.start()
    assert ssh_as(alice).shell(alice).returncode == 0


def test_the_gateway_fails_closed_when_its_secret_is_wrong(
    ssh_as: Callable[[Person], Client], alice: Person, live: LiveServer
) -> None:
    original = live.app
    with original.app_context():
        config = state().config
    other = create_app(dataclasses.replace(config, gateway_secret="x" + GATEWAY_SECRET[1:]))
    live.app = other
    try:
        result = ssh_as(alice).shell(alice)
        assert result.returncode == 255
        assert "Permission denied" in result.stderr
    finally:
        live.app = original
        with other.app_context():
            state().engine.dispose()
    assert ssh_as(alice).shell(alice).returncode == 0


FLOOD = 200


def test_a_flood_of_unauthenticated_connections_leaves_the_gateway_answering(
    ssh_as: Callable[[Person], Client], alice: Person, gateway: Gateway
) -> None:
    started = time.monotonic()
    flood = [socket.create_connection((gateway.ip, PORT), timeout=2) for _ in range(FLOOD)]
    try:
        # MaxStartups 100:30:500 drops a growing share of new unauthenticated connections
        # once 100 are pending, so a login may take a few tries; it must not take many.
        for attempt in range(1, 11):  # noqa: B007 - reported below
            result = ssh_as(alice).shell(alice)
            if result.returncode == 0:
                break
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "dev /workspace"
        assert time.monotonic() - started < 30, f"{attempt} attempts"
        # Bounded in count: past 100 pending, sshd turned some away at once.
        # Bounded in time: LoginGraceTime 10 closes every one that never authenticates.
        said = [everything_until_closed(c, deadline=started + 20) for c in flood]
        assert time.monotonic() - started < 20
        dropped = said.count(b"Exceeded MaxStartups\r\n")
        assert 0 < dropped < FLOOD, dropped
        assert all(
            s.startswith(b"SSH-2.0-OpenSSH") for s in said if s != b"Exceeded MaxStartups\r\n"
        )
    finally:
        for connection in flood:
            connection.close()
