"""The whole devspace stack on the test bed, as one object: for tests, the demo and tests/e2e.

`Stack.start(...)` (a context manager) brings up, on a running control plane and test node:

- the devspace server (a Flask app on a fresh SQLite database) over real HTTP on loopback
  (its public URL, for people and the CLI) and on the test node's bridge address (for pods:
  the gateway's principals command);
- a real reconciler in a thread of this process, as `devspace-server serve --kubeconfig` runs
  one beside the API, acting as the least-privilege ServiceAccount the Helm chart grants
  (`reconcile.identity`), with its own instance label and namespace prefix, and the real sidecar
  image `devspace.test/sshd`;
- the SSH gateway pod (`devspace.test/sshd gateway`), trusting the server's CA and asking the
  server which pods a certificate may reach;
- the server configured with the gateway's address and host key (the app is built once the
  gateway's IP is known, and swapped onto the running HTTP server), so
  `GET /api/v1/ssh/gateway` tells the CLI where to go.

Then `stack.add_user(name)` makes a person and `stack.log_in(name)` signs them in for the CLI
through the real authorization code flow, storing the tokens where the CLI looks (the
`DEVSPACE_CONFIG_DIR` of the calling process) and making this server the CLI's default.
`stack.admin(method, path, json=...)` calls the API as an admin (quotas, for example).

Leaving the context stops the reconciler and deletes every namespace the stack made.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from cli.runner import log_in
from flask import Flask
from host_key_encryption import fresh_host_key_encryption
from kubernetes import client
from reconcile.identity import grant_reconciler, revoke_reconciler
from server.oauth_flows import bearer, make_token
from ssh.gateway_bed import Gateway, LiveServer, start_gateway

from devspace.certificates import forget
from devspace.credentials import Credentials
from devspace_server import accounts, ca, db
from devspace_server.app import create_app
from devspace_server.config import Config, load_config
from devspace_server.context import state
from devspace_server.kube.meta import installation_selector
from devspace_server.models import Role, User
from devspace_server.reconcile.heartbeat import cluster_health
from devspace_server.reconcile.process import reconcile_forever
from devspace_server.reconcile.settings import ReconcilerConfig
from testbed.cluster import ControlPlane, ExistingCluster
from testbed.node import TestNode

PASSWORD = "stack password 0123456789"  # noqa: S105 - a test password
SIDECAR_IMAGE = "devspace.test/sshd"
_SECRET_KEY = "stack-secret-key-0123456789-abcdefghijklmn"  # noqa: S105 - a test key
_GATEWAY_SECRET = "stack-gateway-secret-0123456789-ABCDEFGHIJ"  # noqa: S105 - a test secret


class Stack:
    """A running devspace: server + reconciler + gateway. Build it with `Stack.start`."""

    def __init__(
        self, *, live: LiveServer, app: Flask, gateway: Gateway, kube: client.ApiClient
    ) -> None:
        self.live = live
        self.app = app
        self.gateway = gateway
        self.kube = kube
        self._admin_token: str | None = None

    @property
    def url(self) -> str:
        """The server's URL, as the CLI logs in to it."""
        return self.live.url

    @property
    def config(self) -> Config:
        """The server's configuration."""
        with self.app.app_context():
            return state().config

    @classmethod
    @contextmanager
    def start(
        cls,
        *,
        kube: client.ApiClient,
        control_plane: ControlPlane | ExistingCluster,
        test_node: TestNode,
        directory: Path,
        environment: dict[str, str] | Callable[[str], dict[str, str]] | None = None,
    ) -> Iterator[Stack]:
        """Run the stack in `directory` until the context ends.

        `environment` adds or overrides `DEVSPACE_*` settings of the server (for example
        `DEVSPACE_QUOTA_DEFAULTS`). A function is called with the server's URL, before the
        server is configured, for settings that depend on it (an upstream provider must know
        the server's callback address).
        """
        tag = uuid.uuid4().hex[:6]
        core = client.CoreV1Api(kube)
        # Without a handler of its own, werkzeug adds one bound to whatever sys.stderr is at
        # its first request (a test's captured stream, closed later); records still propagate.
        werkzeug = logging.getLogger("werkzeug")
        if not any(isinstance(h, logging.NullHandler) for h in werkzeug.handlers):
            werkzeug.addHandler(logging.NullHandler())
        with ExitStack() as cleanup:
            system = f"stack-system-{tag}"
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=system)))
            cleanup.callback(core.delete_namespace, system)
            kubeconfig = grant_reconciler(kube, control_plane, system, directory / "kubeconfig")
            cleanup.callback(revoke_reconciler, kube, system)

            # The server's URLs must be known before its configuration (the public URL, and the
            # gateway's Secret): serve a placeholder until the real app exists. People and the
            # CLI use loopback (plain http is allowed only there); pods reach the same app on
            # the node's bridge address.
            live = LiveServer(Flask("placeholder"), "127.0.0.1")
            cleanup.callback(live.stop)
            for_pods = LiveServer(live.app, test_node.gateway)
            cleanup.callback(for_pods.stop)
            url = f"sqlite:///{directory / 'devspace.db'}"
            engine = db.make_engine(url)
            db.migrate(engine)
            engine.dispose()
            ca_key = directory / "ssh_ca_key"
            ca_key.write_bytes(ca.new_private_key_file_content())
            ca_key.chmod(0o600)
            settings = {
                "DEVSPACE_DATA_DIR": str(directory),
                "DEVSPACE_DATABASE_URL": url,
                "DEVSPACE_SECRET_KEY": _SECRET_KEY,
                **fresh_host_key_encryption(),
                "DEVSPACE_PUBLIC_URL": live.url,
                "DEVSPACE_SSH_CA_KEY_FILE": str(ca_key),
                "DEVSPACE_GATEWAY_SECRET": _GATEWAY_SECRET,
                "DEVSPACE_LEASE_NAMESPACE": system,
                "DEVSPACE_CLUSTER_INSTANCE": f"stack-{tag}",
                "DEVSPACE_NAMESPACE_PREFIX": f"st{tag}-",
                "DEVSPACE_SIDECAR_IMAGE": SIDECAR_IMAGE,
                **(environment(live.url) if callable(environment) else environment or {}),
            }
            authority = load_config(settings).ssh_ca
            assert authority is not None
            gateway = start_gateway(
                core,
                trusted_ca_keys=authority.trusted_keys_file(),
                server_url=for_pods.url,
                secret=_GATEWAY_SECRET,
                node_directory=test_node.directory,
                prefix=f"stack-gw-{tag}",
            )
            cleanup.callback(core.delete_namespace, gateway.namespace)
            settings |= {
                "DEVSPACE_GATEWAY_ADDRESS": gateway.address,
                "DEVSPACE_GATEWAY_HOST_KEYS_FILE": str(gateway.host_keys_file(directory)),
                "DEVSPACE_GATEWAY_NAMESPACE": gateway.namespace,
            }
            config = load_config(settings)
            # Pods that ignore SIGTERM would hold `down` for the default 10 s grace.
            cluster = dataclasses.replace(
                config.cluster,
                settings=dataclasses.replace(config.cluster.settings, termination_grace_seconds=1),
            )
            config = dataclasses.replace(config, cluster=cluster)
            app = create_app(config)
            live.app = for_pods.app = app
            cleanup.callback(_dispose, app)
            cleanup.callback(_delete_spaces, kube, config)
            stop = threading.Event()
            reconciler = threading.Thread(
                target=reconcile_forever,
                args=(ReconcilerConfig.from_server_config(config),),
                kwargs={"kubeconfig": str(kubeconfig), "stop": stop},
                name="stack-reconciler",
                daemon=True,
            )
            reconciler.start()
            cleanup.callback(reconciler.join, 30)
            cleanup.callback(stop.set)
            _wait_for_the_reconciler(app, reconciler)
            yield cls(live=live, app=app, gateway=gateway, kube=kube)

    def add_user(self, username: str, *, role: Role = Role.USER, password: str = PASSWORD) -> str:
        """Create a local account; returns its user id."""
        with self.app.app_context(), state().sessions() as session:
            user = accounts.create_user(session, username=username, role=role, password=password)
            session.commit()
            return user.id

    def log_in(self, username: str, password: str = PASSWORD) -> Credentials:
        """Sign `username` in for the CLI through the authorization code flow (PKCE; Flask's
        test client plays the browser), store the tokens as `devspace login` does, and make
        this server the CLI's default. Uses the calling process's `DEVSPACE_CONFIG_DIR`."""
        credentials = log_in(self.app, self.url, username, password)
        # A certificate left by someone signed in before is for their user id: dropped, as
        # `devspace login` drops it.
        forget(self.url)
        return credentials

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API (`path` under the server root) as an admin; returns the JSON answer.

        Raises AssertionError for an error answer.
        """
        if self._admin_token is None:
            self.add_user("stack-admin", role=Role.ADMIN)
            with self.app.app_context(), state().sessions() as session:
                admin = session.query(User).filter_by(username="stack-admin").one()
            self._admin_token = make_token(self.app, admin, "spaces admin")
        response = self.app.test_client().open(
            path, method=method, headers=bearer(self._admin_token), **kwargs
        )
        assert response.status_code < 400, response.get_json()
        return response.get_json()

    def user_id(self, username: str) -> str:
        """The id of the user called `username`."""
        with self.app.app_context(), state().sessions() as session:
            return str(session.query(User).filter_by(username=username).one().id)

    def namespaces(self) -> list[str]:
        """The spaces' namespaces that exist now (terminating ones too)."""
        selector = installation_selector(self.config.cluster.settings)
        found = client.CoreV1Api(self.kube).list_namespace(label_selector=selector).items
        return sorted(ns.metadata.name for ns in found)


def _wait_for_the_reconciler(app: Flask, thread: threading.Thread, timeout: float = 60) -> None:
    """Return once the reconciler leads and has reached the cluster (its heartbeat says so),
    so that the first space does not report "the cluster has never been reachable"."""
    deadline = time.monotonic() + timeout
    while True:
        with app.app_context(), state().sessions() as session:
            health = cluster_health(session)
        if health.ok:
            return
        if not thread.is_alive():
            raise RuntimeError("the stack's reconciler stopped; see the log above")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stack's reconciler is not ready after {timeout} s: {health}")
        time.sleep(0.2)


def _delete_spaces(kube: client.ApiClient, config: Config) -> None:
    core = client.CoreV1Api(kube)
    for ns in core.list_namespace(
        label_selector=installation_selector(config.cluster.settings)
    ).items:
        core.delete_namespace(ns.metadata.name)


def _dispose(app: Flask) -> None:
    with app.app_context():
        state().engine.dispose()
