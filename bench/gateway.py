"""The bench's gateway: the real gateway pod in front of the bench's sidecar, and a devspace
server that tells it the sidecar is the bench user's running space.

The server is the real app on SQLite with the bench's CA, one user whose id is the principal
of the bench certificate, and one `Space` row saying where the sidecar is — as the reconciler
would write it (the reconciler's own speed is the `provision` benchmark's subject, not this).
OpenSSH reaches the sidecar with `ssh -J` through a config file (command-line options do not
reach the jump host); devspace with a two-hop `Connection`. Same key, certificate and pins.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# isort: off
import bench.bed  # noqa: F401 - puts tests/ on the path, for the test bed's modules
from bench.sync import CIPHER
from host_key_encryption import fresh_host_key_encryption
from kubernetes import client

from devspace.ssh import Connection, Hop, Identity, PinnedHostKey
from devspace_server import db
from devspace_server.app import create_app
from devspace_server.ca import fingerprint, parse_public_key
from devspace_server.config import load_config
from devspace_server.context import state
from devspace_server.models import Role, Space, User
from ssh.conftest import OWNER
from ssh.gateway_bed import PORT, Gateway, LiveServer, start_gateway, trusted_ca_keys
from testbed.node import TestNode
# isort: on


@dataclass(frozen=True)
class GatewayRoute:
    """The sidecar behind the gateway, reached by OpenSSH and by devspace alike."""

    gateway: Gateway
    sidecar_ip: str
    keys: Path
    """The bench's key directory: `user`, `user-cert.pub`, `host.pub`."""
    ssh_config: Path
    """An OpenSSH client config pinning both hosts, for `ssh -F`."""

    @property
    def jump(self) -> str:
        return f"devspace@{self.gateway.ip}"

    @property
    def target(self) -> str:
        return f"dev@{self.sidecar_ip}"

    def connection(self) -> Connection:
        """A new, not yet opened two-hop devspace connection to the sidecar."""
        gateway = Hop(
            self.gateway.ip,
            PORT,
            "devspace",
            PinnedHostKey.published(self.gateway.host_public_key),
            name="bench gateway",
        )
        sidecar = Hop(
            self.sidecar_ip,
            PORT,
            "dev",
            PinnedHostKey.published((self.keys / "host.pub").read_text()),
            name="bench sidecar",
        )
        identity = Identity(self.keys / "user", self.keys / "user-cert.pub")
        return Connection(sidecar, identity, gateway=gateway)


def _server(
    directory: Path, ca_key: Path, host_public: str, sidecar_ip: str, *, host: str, shared: str
) -> LiveServer:
    url = f"sqlite:///{directory / 'devspace.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    engine.dispose()
    config = load_config(
        {
            "DEVSPACE_DATA_DIR": str(directory),
            "DEVSPACE_DATABASE_URL": url,
            "DEVSPACE_SECRET_KEY": secrets.token_urlsafe(48),
            **fresh_host_key_encryption(),
            "DEVSPACE_PUBLIC_URL": "http://localhost:8080",
            "DEVSPACE_SSH_CA_KEY_FILE": str(ca_key),
            "DEVSPACE_GATEWAY_SECRET": shared,
        }
    )
    app = create_app(config)
    with app.app_context(), state().sessions() as session:
        session.add(User(id=OWNER, username="bench", role=Role.USER))
        session.flush()
        session.add(
            Space(
                owner_id=OWNER,
                name="bench",
                image="devspace.test/shell",
                storage="1Gi",
                host_private_key="",  # the bench made the sidecar's key itself
                host_public_key=host_public,
                host_key_fingerprint=fingerprint(parse_public_key(host_public).key),
                phase="running",
                reason="",
                pod_ip=sidecar_ip,
                ready=True,
            )
        )
        session.commit()
    return LiveServer(app, host)


@contextmanager
def gateway_route(
    kube: client.ApiClient, node: TestNode, sidecar_ip: str, keys: Path, directory: Path
) -> Iterator[GatewayRoute]:
    """Start the server and the gateway pod for the sidecar at `sidecar_ip`; stop both on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    # One access-log line per gateway question would bury the bench's progress.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    host_public = (keys / "host.pub").read_text().strip()
    shared = secrets.token_urlsafe(48)
    live = _server(
        directory, keys / "ca", host_public, sidecar_ip, host=node.gateway, shared=shared
    )
    core = client.CoreV1Api(kube)
    try:
        gateway = start_gateway(
            core,
            trusted_ca_keys=trusted_ca_keys(live),
            server_url=live.url,
            secret=shared,
            node_directory=node.directory,
        )
        try:
            config = directory / "ssh_config"
            known_hosts = directory / "known_hosts"
            known_hosts.write_text(
                f"[{gateway.ip}]:{PORT} {gateway.host_public_key}\n"
                f"[{sidecar_ip}]:{PORT} {host_public}\n"
            )
            config.write_text(
                "Host *\n"
                f"  Port {PORT}\n"
                "  BatchMode yes\n"
                "  IdentitiesOnly yes\n"
                f"  IdentityFile {keys / 'user'}\n"
                f"  CertificateFile {keys / 'user-cert.pub'}\n"
                "  StrictHostKeyChecking yes\n"
                f"  UserKnownHostsFile {known_hosts}\n"
                "  GlobalKnownHostsFile /dev/null\n"
                "  ExitOnForwardFailure yes\n"
                # The cipher devspace prefers, on both hops: the tunnels differ, not the crypto.
                f"  Ciphers {CIPHER}\n"
            )
            yield GatewayRoute(gateway, sidecar_ip, keys, config)
        finally:
            core.delete_namespace(gateway.namespace)
    finally:
        live.stop()
        with live.app.app_context():
            state().engine.dispose()
