"""The server's SSH CA against real OpenSSH: certificates from `POST /api/v1/ssh/certificates`
open the sidecar of a pod on the test node for their owner, and for nobody else.

The sidecar trusts exactly what the server publishes at `GET /api/v1/ssh/ca` (what the
reconciler puts into each space's Secret): the server's CA and, during a rotation, the CA it
replaced (here, the ssh-keygen CA of `conftest.keys`). Its principals file names one user,
Alice, by her immutable id.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from host_key_encryption import fresh_host_key_encryption

from devspace_server import accounts, ca, db
from devspace_server.app import create_app
from devspace_server.auth import tokens
from devspace_server.config import Config, load_config
from devspace_server.context import state
from devspace_server.models import ApiToken, Role, TokenKind, utcnow

from .conftest import Keys, Sidecar, SpaceSecrets, keygen, ssh

pytestmark = [pytest.mark.kube, pytest.mark.node]

SECRET = "test-secret-0123456789-abcdefghijklmnop"  # noqa: S105 - a test key
PERMISSION_DENIED = "Permission denied (publickey)"


@dataclass(frozen=True)
class Server:
    """The API (Flask's test client on a SQLite database) and two users with `ssh` tokens."""

    app: Flask
    config: Config
    user_ids: dict[str, str]
    tokens: dict[str, str]

    def certificate(self, user: str, public_key: Path) -> str:
        """The certificate line the API issues to `user` for the key in `public_key`."""
        client: FlaskClient = self.app.test_client()
        response = client.post(
            "/api/v1/ssh/certificates",
            json={"public_key": public_key.read_text()},
            headers={"Authorization": f"Bearer {self.tokens[user]}"},
        )
        assert response.status_code == 200, response.get_json()
        line: str = response.get_json()["certificate"]
        return line

    @property
    def ca(self) -> ca.CertificateAuthority:
        assert self.config.ssh_ca is not None
        return self.config.ssh_ca


def _add_user(app: Flask, username: str) -> tuple[str, str]:
    """A user and a personal token with the `ssh` scope; returns (user id, token)."""
    secret = tokens.new_secret(TokenKind.PERSONAL)
    with app.app_context(), state().sessions() as session:
        user = accounts.create_user(session, username=username, role=Role.USER)
        session.add(
            ApiToken(
                token_hash=tokens.digest(secret),
                kind=TokenKind.PERSONAL,
                user_id=user.id,
                name="test",
                scope="ssh",
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
        session.commit()
        return user.id, secret


@pytest.fixture(scope="module")
def server(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("server")
    ca_key = directory / "ssh_ca_key"
    ca_key.write_bytes(ca.new_private_key_file_content())
    ca_key.chmod(0o600)
    url = f"sqlite:///{directory / 'devspace.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    engine.dispose()
    config = load_config(
        {
            "DEVSPACE_DATA_DIR": str(directory),
            "DEVSPACE_DATABASE_URL": url,
            "DEVSPACE_SECRET_KEY": SECRET,
            **fresh_host_key_encryption(),
            "DEVSPACE_PUBLIC_URL": "http://localhost:8080",
            "DEVSPACE_SSH_CA_KEY_FILE": str(ca_key),
            # Rotation: the ssh-keygen CA is the one this server's CA replaced.
            "DEVSPACE_SSH_CA_PREVIOUS_PUBLIC_KEYS": keys.path("ca.pub").read_text(),
        }
    )
    app = create_app(config)
    users = {name: _add_user(app, name) for name in ("alice", "bob")}
    yield Server(
        app,
        config,
        user_ids={name: uid for name, (uid, _) in users.items()},
        tokens={name: token for name, (_, token) in users.items()},
    )
    with app.app_context():
        state().engine.dispose()


@pytest.fixture(scope="module")
def host_key() -> ca.HostKey:
    return ca.new_host_key()


@pytest.fixture(scope="module")
def space_secrets(server: Server, host_key: ca.HostKey) -> SpaceSecrets:
    """As the reconciler will write them: a host key made by the server, the CA keys the API
    publishes, and Alice's id as the only principal."""
    published = server.app.test_client().get("/api/v1/ssh/ca").get_json()
    return SpaceSecrets(
        host_private_key=host_key.private_openssh.encode(),
        host_public_key=host_key.public_line,
        trusted_ca_keys="".join(f"{line}\n" for line in published["trusted_public_keys"]),
        principals=[server.user_ids["alice"]],
    )


def test_the_published_keys_are_what_the_reconciler_writes(
    server: Server, space_secrets: SpaceSecrets, keys: Keys
) -> None:
    assert server.ca.trusted_keys_file() == space_secrets.trusted_ca_keys
    current, previous = space_secrets.trusted_ca_keys.splitlines()
    assert previous.split()[:2] == keys.path("ca.pub").read_text().split()[:2]
    assert current.split()[:2] != previous.split()[:2]


def test_the_sidecar_serves_the_host_key_the_server_made(
    sidecar: Sidecar, host_key: ca.HostKey, tmp_path: Path
) -> None:
    # OpenSSH computes the same fingerprint the server will publish for the CLI to pin.
    public = tmp_path / "host.pub"
    public.write_text(host_key.public_line + "\n")
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(public)], capture_output=True, text=True, check=True
    )
    assert listed.stdout.split()[1] == host_key.fingerprint
    # And the sidecar proves it holds that key (known_hosts pins it; checking is strict).
    scanned = subprocess.run(
        ["ssh-keyscan", "-p", "2222", "-t", "ed25519", sidecar.ip],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert scanned.stdout.split()[1:3] == host_key.public_line.split()[:2]


@pytest.mark.parametrize(
    ("kind", "bits"), [("ed25519", None), ("ecdsa", 384), ("rsa", 3072)], ids=str
)
def test_a_certificate_from_the_api_lets_its_owner_in(
    server: Server, sidecar: Sidecar, tmp_path: Path, kind: str, bits: int | None
) -> None:
    key = keygen(tmp_path / f"id_{kind}", kind, bits)
    # Not `<key>-cert.pub`: only the -o CertificateFile option offers it.
    certificate = tmp_path / "from-the-api"
    certificate.write_text(server.certificate("alice", key.with_suffix(".pub")) + "\n")
    result = ssh(sidecar, key, "id -un", certificate=certificate)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dev\n"
    # The key alone, without its certificate, does not.
    assert ssh(sidecar, key, "true").returncode == 255


def test_the_certificate_allows_a_terminal(
    server: Server, sidecar: Sidecar, tmp_path: Path
) -> None:
    key = keygen(tmp_path / "id_ed25519")
    certificate = tmp_path / "from-the-api"
    certificate.write_text(server.certificate("alice", key.with_suffix(".pub")))
    result = ssh(sidecar, key, "-tt", "tty", certificate=certificate)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("/dev/pts/")


def test_a_certificate_for_another_user_is_refused(
    server: Server, sidecar: Sidecar, tmp_path: Path
) -> None:
    key = keygen(tmp_path / "id_ed25519")
    certificate = tmp_path / "bobs"
    certificate.write_text(server.certificate("bob", key.with_suffix(".pub")))
    result = ssh(sidecar, key, "true", certificate=certificate)
    assert result.returncode == 255
    assert PERMISSION_DENIED in result.stderr


@pytest.mark.parametrize("when", ["expired", "not-yet-valid"])
def test_a_certificate_outside_its_validity_is_refused(
    server: Server, sidecar: Sidecar, tmp_path: Path, when: str
) -> None:
    key = keygen(tmp_path / "id_ed25519")
    shift = timedelta(hours=-2) if when == "expired" else timedelta(hours=2)
    issued = server.ca.sign(
        ca.parse_public_key(key.with_suffix(".pub").read_text()),
        principal=server.user_ids["alice"],
        key_id=f"test-{when}",
        lifetime=timedelta(hours=1),
        now=datetime.now(UTC) + shift,
    )
    certificate = tmp_path / when
    certificate.write_text(issued.line)
    result = ssh(sidecar, key, "true", certificate=certificate)
    assert result.returncode == 255
    assert PERMISSION_DENIED in result.stderr


def test_a_certificate_from_the_previous_ca_still_works_during_a_rotation(
    server: Server, sidecar: Sidecar, keys: Keys
) -> None:
    key = keys.sign("rotated", principals=server.user_ids["alice"])
    result = ssh(sidecar, key, "true")
    assert result.returncode == 0, result.stderr
    untrusted = keys.sign("untrusted", principals=server.user_ids["alice"], ca="other-ca")
    assert ssh(sidecar, untrusted, "true").returncode == 255
