"""The bed for the CLI's remote-session commands: the real server, the real gateway, real
sidecars, and the CLI signed in as alice.

Built from tests/ssh/gateway_bed.py's pieces (imported, not copied); one bed for the package
(tests that change it put it back):

- ``bed`` (``Bed``): a devspace server over real HTTP on the test node's bridge address
  (``LiveServer``), configured with the gateway's address and host key file, as the
  production server is; alice and bob (``Person``) each with a running space ``work`` (a
  sidecar pod with an HTTP server on its localhost:8000, and the `Space` row the reconciler
  would write); the gateway pod; and the CLI's own files (``DEVSPACE_CONFIG_DIR`` …) signed
  in as alice with a personal token for scopes ``spaces ssh``, ``work`` her default space.
  ``bed.restart_gateway()`` deletes and recreates the gateway pod (a new IP is possible) and
  points the server at it; ``bed.serving(...)`` serves the app with other gateway settings
  for a while.
- ``devspace``: ``devspace(*args)`` runs the CLI in this process (``Result``).
- ``cli``: ``cli(*args, stdin=b"")`` runs it as a separate process (``python -m devspace``),
  bytes in and out.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask
from host_key_encryption import fresh_host_key_encryption
from kubernetes import client
from kubernetes.client.rest import ApiException
from server.oauth_flows import make_token
from ssh.conftest import keygen, sidecar_pod
from ssh.gateway_bed import (
    PORT,
    LiveServer,
    Person,
    gateway_pod,
    make_namespace,
    make_person,
    run_pod,
    start_space,
)

from cli.runner import Result, run_captured
from devspace.config import Settings
from devspace.credentials import Credentials, Store
from devspace_server import db
from devspace_server.app import create_app
from devspace_server.ca import new_host_key
from devspace_server.config import load_config
from devspace_server.context import state
from devspace_server.models import Space, User
from testbed.eventually import eventually
from testbed.node import TestNode

SECRET_KEY = "cli-remote-test-secret-key-0123456789-abcdef"  # noqa: S105 - a test key
GATEWAY_SECRET = "cli-remote-gateway-secret-0123456789-ABCDEF"  # noqa: S105 - a test secret
SPACE = "work"


@dataclass
class Bed:
    """Everything a remote-session test talks to; see the module docstring."""

    live: LiveServer
    settings: dict[str, str]
    alice: Person
    bob: Person
    core: client.CoreV1Api
    gateway_namespace: str
    gateway_ip: str
    gateway_keys_file: Path
    gateway_host_key: object
    home: Path
    namespaces: list[str] = field(default_factory=list)
    space_namespaces: dict[str, str] = field(default_factory=dict)
    """user id -> the namespace of that person's space"""

    @property
    def url(self) -> str:
        return self.live.url

    def app(self, **settings: str) -> Flask:
        """The server's app with the bed's settings, changed by `settings`."""
        return create_app(load_config(self.settings | settings))

    def serve_gateway(self, address: str, keys_file: Path) -> None:
        """Make the live server publish this gateway address and host key file."""
        self._swap(
            self.app(
                DEVSPACE_GATEWAY_ADDRESS=address, DEVSPACE_GATEWAY_HOST_KEYS_FILE=str(keys_file)
            )
        )

    def _swap(self, app: Flask) -> Flask:
        old, self.live.app = self.live.app, app
        return old

    @contextmanager
    def serving(self, address: str, keys_file: Path) -> Iterator[None]:
        """Publish another gateway address or host key for the duration."""
        old = self._swap(
            self.app(
                DEVSPACE_GATEWAY_ADDRESS=address, DEVSPACE_GATEWAY_HOST_KEYS_FILE=str(keys_file)
            )
        )
        try:
            yield
        finally:
            replaced = self._swap(old)
            with replaced.app_context():
                state().engine.dispose()

    def start_gateway(self) -> None:
        """Run the gateway pod (its Secrets exist) and point the server at it."""
        self.gateway_ip = run_pod(self.core, self.gateway_namespace, {}, gateway_pod())
        self.serve_gateway(f"{self.gateway_ip}:{PORT}", self.gateway_keys_file)

    def stop_gateway(self) -> None:
        """Delete the gateway pod and wait until it is gone."""
        self.core.delete_namespaced_pod("gateway", self.gateway_namespace)

        def gone() -> bool:
            try:
                self.core.read_namespaced_pod("gateway", self.gateway_namespace)
            except ApiException as error:
                return error.status == 404
            return False

        eventually(gone, what="the gateway pod to be deleted", timeout=30)

    def restart_gateway(self) -> None:
        self.stop_gateway()
        self.start_gateway()

    def replace_space_pod(self, person: Person) -> None:
        """Delete `person`'s sidecar pod, run a new one (same Secrets, so the same host key;
        perhaps another IP) and write its IP to the `Space` row, as the reconciler would."""
        namespace = self.space_namespaces[person.user_id]
        self.core.delete_namespaced_pod("space", namespace)
        eventually(
            lambda: not self.core.list_namespaced_pod(namespace).items,
            what="the space's pod to be deleted",
            timeout=30,
        )
        person.pod_ip = run_pod(self.core, namespace, {}, sidecar_pod())
        with self.live.app.app_context(), state().sessions() as session:
            row = session.get(Space, person.space_id)
            assert row is not None
            row.pod_ip = person.pod_ip
            session.commit()


def _server_settings(directory: Path) -> dict[str, str]:
    url = f"sqlite:///{directory / 'devspace.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    engine.dispose()
    return {
        "DEVSPACE_DATA_DIR": str(directory),
        "DEVSPACE_DATABASE_URL": url,
        "DEVSPACE_SECRET_KEY": SECRET_KEY,
        **fresh_host_key_encryption(),
        "DEVSPACE_PUBLIC_URL": "http://localhost:8080",
        "DEVSPACE_SSH_CA_KEY_FILE": str(keygen(directory / "ca")),
        "DEVSPACE_GATEWAY_SECRET": GATEWAY_SECRET,
    }


def sign_in(app: Flask, url: str, person: Person, username: str) -> None:
    """Store a personal token for `person` as `devspace login --token` would."""
    with app.app_context(), state().sessions() as session:
        user = session.get(User, person.user_id)
        assert user is not None
    token = make_token(app, user, "spaces ssh")
    Store().save(Credentials(server=url, access_token=token, kind="personal", username=username))
    Settings(default_server=url, default_spaces={url: SPACE}).save()


@pytest.fixture(scope="package")
def bed(
    tmp_path_factory: pytest.TempPathFactory, kube: client.ApiClient, test_node: TestNode
) -> Iterator[Bed]:
    directory = tmp_path_factory.mktemp("cli-remote")
    settings = _server_settings(directory)
    live = LiveServer(create_app(load_config(settings)), test_node.gateway)
    home = directory / "home"
    core = client.CoreV1Api(kube)
    namespaces: list[str] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DEVSPACE_CONFIG_DIR", str(home / "config"))
        env.setenv("DEVSPACE_STATE_DIR", str(home / "state"))
        env.setenv("DEVSPACE_CREDENTIALS", "file")
        env.delenv("DEVSPACE_SERVER", raising=False)
        try:
            alice = make_person(live.app, directory, "alice")
            bob = make_person(live.app, directory, "bob")
            space_namespaces = {}
            for person in (alice, bob):
                start_space(core, live, person, namespaces)
                space_namespaces[person.user_id] = namespaces[-1]
            host = new_host_key()
            with live.app.app_context():
                ca = state().config.ssh_ca
            assert ca is not None
            gateway_namespace = make_namespace(core, "cli-gw")
            namespaces.append(gateway_namespace)
            secrets = {
                "host-key": {"ssh_host_ed25519_key": host.private_openssh.encode()},
                "ca": {"ca.pub": ca.trusted_keys_file().encode()},
                "gateway": {"server-url": live.url.encode(), "secret": GATEWAY_SECRET.encode()},
            }
            ip = run_pod(core, gateway_namespace, secrets, gateway_pod())
            keys_file = directory / "gateway_host_key.pub"
            keys_file.write_text(host.public_line + "\n")
            bed = Bed(
                live, settings, alice, bob, core, gateway_namespace, ip, keys_file, host, home,
                namespaces, space_namespaces,
            )  # fmt: skip
            bed.serve_gateway(f"{ip}:{PORT}", keys_file)
            sign_in(live.app, live.url, alice, "alice")
            yield bed
        finally:
            for namespace in namespaces:
                core.delete_namespace(namespace)
            live.stop()
            with live.app.app_context():
                state().engine.dispose()


@pytest.fixture
def devspace(bed: Bed, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    return functools.partial(run_captured, capsys)


CLI = [sys.executable, "-m", "devspace"]


@pytest.fixture
def cli(bed: Bed) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    def invoke(
        *args: str, stdin: bytes = b"", timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*CLI, *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=dict(os.environ),
        )

    return invoke
