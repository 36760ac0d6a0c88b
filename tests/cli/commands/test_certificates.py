"""The CLI's SSH key and certificate for a server (`devspace.certificates`), against the real
API: made once, reused while valid, renewed before expiry, replaced when it no longer fits."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from server.oauth_flows import make_token

from devspace.api import Api
from devspace.certificates import RENEW_BEFORE, ensure_identity, forget, key_directory
from devspace.credentials import Credentials
from devspace.errors import ServerError
from devspace_server import accounts
from devspace_server.context import state
from devspace_server.models import Role, TokenKind

from .conftest import Result, Served


@pytest.fixture(scope="module")
def ca_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-ca") / "ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture
def with_ca(request: pytest.FixtureRequest) -> bool:
    """Whether the server has an SSH CA; a test may say no with indirect parametrization."""
    return bool(getattr(request, "param", True))


@pytest.fixture
def settings(settings: dict[str, str], with_ca: bool, ca_key_file: Path) -> dict[str, str]:
    return settings | ({"DEVSPACE_SSH_CA_KEY_FILE": str(ca_key_file)} if with_ca else {})


def certificate(path: Path) -> serialization.SSHCertificate:
    parsed = serialization.load_ssh_public_identity(path.read_bytes())
    assert isinstance(parsed, serialization.SSHCertificate)
    return parsed


def test_a_key_is_made_once_and_its_certificate_reused_while_valid(
    signed_in: Credentials, server: Served, ca_key_file: Path
) -> None:
    api = Api(signed_in.server)
    identity = ensure_identity(api)

    assert stat.S_IMODE(identity.private_key.stat().st_mode) == 0o600
    assert identity.private_key.parent == key_directory(signed_in.server)
    issued = certificate(identity.certificate)
    key = serialization.load_ssh_private_key(identity.private_key.read_bytes(), None)
    assert issued.public_key() == key.public_key()
    ca = serialization.load_ssh_public_key(ca_key_file.with_suffix(".pub").read_bytes())
    assert issued.signature_key() == ca
    issued.verify_cert_signature()

    again = ensure_identity(api)
    assert again == identity
    assert certificate(again.certificate).serial == issued.serial


def test_a_certificate_about_to_expire_is_renewed_for_the_same_key(
    signed_in: Credentials, server: Served
) -> None:
    api = Api(signed_in.server)
    identity = ensure_identity(api)
    first = certificate(identity.certificate)

    ensure_identity(api, now=first.valid_before - RENEW_BEFORE + 1)
    renewed = certificate(identity.certificate)
    assert renewed.serial != first.serial
    assert renewed.public_key() == first.public_key()


def test_a_certificate_for_another_key_is_replaced(signed_in: Credentials, server: Served) -> None:
    api = Api(signed_in.server)
    identity = ensure_identity(api)
    old = certificate(identity.certificate)
    forget(signed_in.server)
    assert not identity.private_key.exists()
    identity.certificate.write_bytes(old.public_bytes())  # a stale certificate stays behind

    ensure_identity(api)
    fresh = certificate(identity.certificate)
    assert fresh.public_key() != old.public_key()
    key = serialization.load_ssh_private_key(identity.private_key.read_bytes(), None)
    assert fresh.public_key() == key.public_key()


@pytest.mark.parametrize("with_ca", [False], indirect=True)
def test_a_server_without_a_certificate_authority_says_so(
    signed_in: Credentials, server: Served
) -> None:
    with pytest.raises(ServerError, match="SSH_CA_KEY_FILE"):
        ensure_identity(Api(signed_in.server))


def test_a_new_sign_in_drops_the_last_one_s_certificate(
    signed_in: Credentials, server: Served, devspace: Callable[..., Result]
) -> None:
    api = Api(signed_in.server)
    earlier = ensure_identity(api)
    with server.app.app_context(), state().sessions() as session:
        bob = accounts.create_user(session, username="bob", role=Role.USER, password=None)
        session.commit()
        session.expunge(bob)
    token = make_token(server.app, bob, "spaces ssh", kind=TokenKind.PERSONAL)
    assert devspace("login", "--server", server.url, "--token", token).code == 0
    assert not earlier.certificate.exists()  # it names alice, who is no longer signed in

    issued = certificate(ensure_identity(Api(signed_in.server)).certificate)
    assert issued.valid_principals == [bob.id.encode()]
