"""The SSH certificate authority through the API: what a certificate says, who may get one,
which keys are refused and why, what is audited, and how the CA key is configured."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import SSHCertificate, SSHCertificateType
from cryptography.utils import CryptographyDeprecationWarning
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from devspace_server import ca
from devspace_server.auth import passwords
from devspace_server.config import load_config
from devspace_server.context import state
from devspace_server.errors import ConfigError
from devspace_server.models import AuditEvent, User
from devspace_server.serve import Bind, serve_config

from .conftest import HOST_KEY_ENCRYPTION_KEY
from .oauth_flows import bearer, make_token

URL = "/api/v1/ssh/certificates"
Key = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | dsa.DSAPrivateKey


def openssh_public(key: Key, comment: str = "me@laptop") -> str:
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{line.decode()} {comment}"


def openssh_private(key: Key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def write_private(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about certificates, not the hash."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture(scope="session")
def ca_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ssh-ca")
    return write_private(directory / "ca_key", ca.new_private_key_file_content())


@pytest.fixture(scope="session")
def previous_ca() -> str:
    """The public key of the CA this one replaced, still trusted during the rotation."""
    return openssh_public(ed25519.Ed25519PrivateKey.generate(), "old-ca")


@pytest.fixture
def settings(settings: dict[str, str], ca_key_file: Path, previous_ca: str) -> dict[str, str]:
    return settings | {
        "DEVSPACE_SSH_CA_KEY_FILE": str(ca_key_file),
        "DEVSPACE_SSH_CA_PREVIOUS_PUBLIC_KEYS": f"# rotated out on 1 May\n{previous_ca}\n",
    }


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def token(app: Flask, alice: User) -> str:
    return make_token(app, alice, "ssh")


@pytest.fixture(scope="module")
def user_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def issue(client: FlaskClient, token: str, public_key: str) -> Any:
    return client.post(URL, json={"public_key": public_key}, headers=bearer(token))


def audit_events(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context(), state().sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_a_certificate_names_the_caller_by_id_for_pty_and_forwarding_only(
    client: FlaskClient, token: str, alice: User, user_key: ed25519.Ed25519PrivateKey
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    response = issue(client, token, openssh_public(user_key))
    after = datetime.now(UTC)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()

    cert = serialization.load_ssh_public_identity(body["certificate"].encode())
    assert isinstance(cert, SSHCertificate)
    assert cert.type is SSHCertificateType.USER
    assert cert.public_key() == user_key.public_key()
    assert cert.valid_principals == [alice.id.encode()]
    assert cert.key_id.decode() == body["key_id"]
    assert re.fullmatch(rf"devspace:user={alice.id}:req=[0-9a-f-]{{36}}", body["key_id"])
    assert str(cert.serial) == body["serial"]
    assert body["principals"] == [alice.id]
    assert cert.extensions == {b"permit-port-forwarding": b"", b"permit-pty": b""}
    assert cert.critical_options == {}

    # Backdated a minute for clock skew; valid for the default four hours from issuance.
    valid_after = datetime.fromtimestamp(cert.valid_after, UTC)
    valid_before = datetime.fromtimestamp(cert.valid_before, UTC)
    assert before - timedelta(seconds=60) <= valid_after <= after - timedelta(seconds=59)
    assert valid_before - valid_after == timedelta(hours=4, seconds=60)
    assert body["valid_after"] == valid_after.isoformat().replace("+00:00", "Z")
    assert datetime.fromisoformat(body["valid_before"]) == valid_before

    # Signed by the CA the server publishes.
    cert.verify_cert_signature()
    published = client.get("/api/v1/ssh/ca").get_json()["public_key"]
    signer = serialization.load_ssh_public_key(published.encode())
    assert cert.signature_key() == signer
    assert body["public_key_fingerprint"] == ca.fingerprint(user_key.public_key())


def test_every_certificate_has_its_own_serial_and_key_id(
    client: FlaskClient, token: str, user_key: ed25519.Ed25519PrivateKey
) -> None:
    first, second = (issue(client, token, openssh_public(user_key)).get_json() for _ in "12")
    assert first["serial"] != second["serial"]
    assert first["key_id"] != second["key_id"]


def test_issuance_is_audited_with_the_key_and_the_serial(
    app: Flask, client: FlaskClient, token: str, alice: User, user_key: ed25519.Ed25519PrivateKey
) -> None:
    body = issue(client, token, openssh_public(user_key)).get_json()
    (event,) = audit_events(app, "ssh.certificate_issued")
    assert (event.actor_id, event.actor_name, event.target) == (alice.id, "alice", alice.id)
    assert event.ip == "127.0.0.1"
    assert event.details["serial"] == body["serial"]
    assert event.details["key_id"] == body["key_id"]
    assert event.details["fingerprint"] == ca.fingerprint(user_key.public_key())
    assert event.details["key_type"] == "ssh-ed25519"
    assert event.details["principals"] == [alice.id]


ACCEPTED_KEYS: dict[str, Callable[[], Key]] = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ecdsa-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ecdsa-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ecdsa-p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "rsa-3072": lambda: rsa.generate_private_key(65537, 3072),
}


@pytest.mark.parametrize("kind", ACCEPTED_KEYS)
def test_strong_keys_are_certified(client: FlaskClient, token: str, kind: str) -> None:
    key = ACCEPTED_KEYS[kind]()
    response = issue(client, token, openssh_public(key))
    assert response.status_code == 200, response.get_json()
    cert = serialization.load_ssh_public_identity(response.get_json()["certificate"].encode())
    assert isinstance(cert, SSHCertificate)
    assert cert.public_key() == key.public_key()


def _certificate_line() -> str:
    authority = ca.CertificateAuthority(ed25519.Ed25519PrivateKey.generate())
    key = ca.parse_public_key(openssh_public(ed25519.Ed25519PrivateKey.generate()))
    issued = authority.sign(key, principal="p", key_id="k", lifetime=timedelta(hours=1))
    return issued.line


def _dsa() -> str:
    # cryptography still writes ssh-dss lines, warning that it will stop; OpenSSH already has.
    with warnings.catch_warnings(action="ignore", category=CryptographyDeprecationWarning):
        return openssh_public(dsa.generate_private_key(1024))  # noqa: S505 - refused here


def _two_lines() -> str:
    keys = [openssh_public(ed25519.Ed25519PrivateKey.generate()) for _ in "12"]
    return "\n".join(keys)


REFUSED: dict[str, tuple[Callable[[], str], str]] = {  # case -> (what is sent, what is said)
    "dsa": (_dsa, "DSA keys are too weak"),
    "rsa-2048": (
        lambda: openssh_public(rsa.generate_private_key(65537, 2048)),
        "This RSA key has 2048 bits, too few to be safe: use an RSA key of 3072 bits or more",
    ),
    "certificate": (_certificate_line, "This is an SSH certificate, not a public key"),
    "openssh-private-key": (
        lambda: openssh_private(ed25519.Ed25519PrivateKey.generate()),
        "This is a private key, which must never leave your machine",
    ),
    "pem-private-key": (
        lambda: (
            rsa.generate_private_key(65537, 3072)
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        ),
        "This is a private key",
    ),
    "garbage": (lambda: "hello, world", "This is not an OpenSSH public key line"),
    "truncated": (
        lambda: openssh_public(ed25519.Ed25519PrivateKey.generate())[:50],
        "This is not an OpenSSH public key line",
    ),
    "two-lines": (_two_lines, "Send exactly one public key line"),
    "security-key": (
        lambda: "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t me",
        "Security-key (FIDO) keys are not supported yet",
    ),
    "empty": (lambda: "  ", "Send an OpenSSH public key line"),
    "non-ascii": (lambda: "ssh-ed25519 AAAAé", "This is not an OpenSSH public key line"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_unacceptable_keys_are_refused_saying_why_and_what_is_accepted(
    app: Flask, client: FlaskClient, token: str, case: str
) -> None:
    make, says = REFUSED[case]
    sent = make()
    response = issue(client, token, sent)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    (error,) = response.get_json()["errors"]
    assert error["field"] == "public_key"
    assert error["pointer"] == "#/public_key"
    assert error["detail"].startswith(says), error["detail"]
    if case not in ("two-lines", "certificate", "openssh-private-key", "pem-private-key"):
        assert ca.ACCEPTED in error["detail"] or "3072" in error["detail"]
    if "private" in case:
        assert ".pub" in error["detail"]
        # A pasted secret is never echoed back.
        assert sent.splitlines()[1] not in response.get_data(as_text=True)
    assert audit_events(app, "ssh.certificate_issued") == []


def test_a_token_without_the_ssh_scope_is_refused(
    app: Flask, client: FlaskClient, alice: User, user_key: ed25519.Ed25519PrivateKey
) -> None:
    response = issue(client, make_token(app, alice, "spaces"), openssh_public(user_key))
    assert response.status_code == 403
    assert 'error="insufficient_scope", scope="ssh"' in response.headers["WWW-Authenticate"]
    assert client.post(URL, json={"public_key": openssh_public(user_key)}).status_code == 401


def test_a_disabled_user_gets_no_certificate(
    app: Flask,
    client: FlaskClient,
    make_user: Callable[..., User],
    user_key: ed25519.Ed25519PrivateKey,
) -> None:
    mallory = make_user("mallory", disabled=True)
    response = issue(client, make_token(app, mallory, "ssh"), openssh_public(user_key))
    assert response.status_code == 401
    assert "disabled" in response.get_json()["detail"]
    assert audit_events(app, "ssh.certificate_issued") == []


def test_the_ca_publishes_its_key_and_the_previous_one_it_still_trusts(
    client: FlaskClient, ca_key_file: Path, previous_ca: str
) -> None:
    response = client.get("/api/v1/ssh/ca")  # public keys only: no token needed
    assert response.status_code == 200
    body = response.get_json()
    own = ca.load_private_key(ca_key_file).public_key()
    assert serialization.load_ssh_public_key(body["public_key"].encode()) == own
    assert body["trusted_public_keys"][0] == body["public_key"]
    old = previous_ca.split()[:2]
    assert [line.split()[:2] for line in body["trusted_public_keys"][1:]] == [old]
    assert "PRIVATE" not in response.get_data(as_text=True)


def test_a_server_without_a_ca_key_says_so(
    settings: dict[str, str], make_app: Callable[..., Flask], token: str
) -> None:
    plain = {k: v for k, v in settings.items() if not k.startswith("DEVSPACE_SSH_CA")}
    client = make_app(load_config(plain)).test_client()
    for response in (client.get("/api/v1/ssh/ca"), issue(client, token, "ssh-ed25519 AAAA")):
        assert response.status_code == 503
        assert response.get_json()["type"] == "urn:devspace:problem:ssh-ca-not-configured"
        assert "DEVSPACE_SSH_CA_KEY_FILE" in response.get_json()["detail"]


def test_the_lifetime_is_configurable_within_bounds(
    settings: dict[str, str],
    make_app: Callable[..., Flask],
    alice: User,
    user_key: ed25519.Ed25519PrivateKey,
) -> None:
    app = make_app(load_config(settings | {"DEVSPACE_SSH_CERT_LIFETIME_SECONDS": "600"}))
    body = issue(app.test_client(), make_token(app, alice, "ssh"), openssh_public(user_key))
    cert = serialization.load_ssh_public_identity(body.get_json()["certificate"].encode())
    assert isinstance(cert, SSHCertificate)
    assert cert.valid_before - cert.valid_after == 660
    with pytest.raises(ConfigError, match="SSH_CERT_LIFETIME_SECONDS is 604800: set it between"):
        load_config(settings | {"DEVSPACE_SSH_CERT_LIFETIME_SECONDS": "604800"})


# Configuration of the CA key: no database needed.


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "DEVSPACE_DATA_DIR": str(tmp_path),
        "DEVSPACE_SECRET_KEY": "test-secret-0123456789-abcdefghijklmnop",
        "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS": HOST_KEY_ENCRYPTION_KEY,
        "DEVSPACE_PUBLIC_URL": "https://devspace.example.com",
    }


def ca_problem(env: dict[str, str], **settings: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(env | {f"DEVSPACE_{k.upper()}": v for k, v in settings.items()})
    (problem,) = caught.value.problems
    return problem


def test_a_ca_key_others_can_read_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    key = write_private(tmp_path / "ca", ca.new_private_key_file_content(), 0o644)
    problem = ca_problem(env, ssh_ca_key_file=str(key))
    assert problem.startswith(f"DEVSPACE_SSH_CA_KEY_FILE names {key}, which others may read")
    assert "chmod 600" in problem
    key.chmod(0o640)  # group-readable is refused too when the file is ours, as OpenSSH does
    assert "others may read (mode 640)" in ca_problem(env, ssh_ca_key_file=str(key))


def test_a_ca_key_of_another_type_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    rsa_key = openssh_private(rsa.generate_private_key(65537, 3072)).encode()
    key = write_private(tmp_path / "ca", rsa_key)
    problem = ca_problem(env, ssh_ca_key_file=str(key))
    assert "whose key is RSA: the SSH CA key must be Ed25519" in problem
    assert "ssh-keygen -t ed25519" in problem


def test_an_encrypted_or_missing_ca_key_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    encrypted = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    key = write_private(tmp_path / "ca", encrypted)
    assert "holds no unencrypted OpenSSH or PEM private key" in ca_problem(
        env, ssh_ca_key_file=str(key)
    )
    missing = tmp_path / "nothing"
    assert "cannot be read (No such file or directory)" in ca_problem(
        env, ssh_ca_key_file=str(missing)
    )


def test_an_ed25519_ca_key_in_pem_format_is_accepted(env: dict[str, str], tmp_path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = write_private(tmp_path / "ca", pem)
    config = load_config(env | {"DEVSPACE_SSH_CA_KEY_FILE": str(key)})
    assert config.ssh_ca is not None
    assert "PRIVATE" not in repr(config)


def test_previous_ca_keys_must_be_public_keys(env: dict[str, str], ca_key_file: Path) -> None:
    problem = ca_problem(
        env, ssh_ca_key_file=str(ca_key_file), ssh_ca_previous_public_keys="# old\nnot a key"
    )
    assert problem.startswith("DEVSPACE_SSH_CA_PREVIOUS_PUBLIC_KEYS line 2: This is not")
    problem = ca_problem(env, ssh_ca_previous_public_keys="ssh-ed25519 AAAA")
    assert problem == "DEVSPACE_SSH_CA_PREVIOUS_PUBLIC_KEYS is set without DEVSPACE_SSH_CA_KEY_FILE"


def test_serve_makes_a_ca_key_once_and_keeps_it(env: dict[str, str], tmp_path: Path) -> None:
    del env["DEVSPACE_PUBLIC_URL"]
    first = serve_config(env, Bind("127.0.0.1", 8080)).ssh_ca
    key_file = tmp_path / "ssh_ca_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    second = serve_config(env, Bind("127.0.0.1", 8080)).ssh_ca
    assert first is not None
    assert second is not None
    assert first.trusted_public_keys == second.trusted_public_keys
