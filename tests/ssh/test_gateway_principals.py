"""The gateway's endpoint, `POST /internal/gateway/principals`, and its secret's setting.

Fast, in-process (Flask's test client on a migrated SQLite database): every kind of
certificate, user and space the answer depends on. `test_gateway.py` proves the same answers
drive a real sshd.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    SSHCertificateBuilder,
    SSHCertificateType,
)
from flask import Flask
from flask.testing import FlaskClient
from host_key_encryption import fresh_host_key_encryption
from werkzeug.test import TestResponse

from devspace_server import accounts, db
from devspace_server.api.gateway import principals_line
from devspace_server.app import create_app
from devspace_server.ca import CertificateAuthority, new_host_key, parse_public_key
from devspace_server.config import Config, load_config
from devspace_server.context import state
from devspace_server.errors import ConfigError
from devspace_server.models import Role, Space, User

SECRET_KEY = "principals-test-secret-key-0123456789-abcdefgh"  # noqa: S105 - a test key
GATEWAY_SECRET = "gateway-shared-secret-0123456789-ABCDEFGHIJ"  # noqa: S105 - a test secret
PATH = "/internal/gateway/principals"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "DEVSPACE_DATA_DIR": str(tmp_path),
        "DEVSPACE_DATABASE_URL": f"sqlite:///{tmp_path / 'devspace.db'}",
        "DEVSPACE_SECRET_KEY": SECRET_KEY,
        **fresh_host_key_encryption(),
        "DEVSPACE_PUBLIC_URL": "http://localhost:8080",
        "DEVSPACE_GATEWAY_SECRET": GATEWAY_SECRET,
    }


@pytest.fixture
def ca_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def previous_ca_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def app(
    env: dict[str, str],
    ca_key: ed25519.Ed25519PrivateKey,
    previous_ca_key: ed25519.Ed25519PrivateKey,
) -> Iterator[Flask]:
    engine = db.make_engine(env["DEVSPACE_DATABASE_URL"])
    db.migrate(engine)
    engine.dispose()
    previous = CertificateAuthority(previous_ca_key).public_key
    config = dataclasses.replace(load_config(env), ssh_ca=CertificateAuthority(ca_key, [previous]))
    app = create_app(config)
    yield app
    with app.app_context():
        state().engine.dispose()


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    return app.test_client()


def make_user(app: Flask, username: str = "alice", *, disabled: bool = False) -> str:
    with app.app_context(), state().sessions() as session:
        user = accounts.create_user(session, username=username, role=Role.USER, password=None)
        user.disabled = disabled
        session.commit()
        return user.id


def add_space(app: Flask, owner: str, name: str, **status: Any) -> None:
    host = new_host_key()
    with app.app_context(), state().sessions() as session:
        session.add(
            Space(
                owner_id=owner,
                name=name,
                image="debian",
                storage="1Gi",
                host_private_key=host.private_openssh,
                host_public_key=host.public_line,
                host_key_fingerprint=host.fingerprint,
                **status,
            )
        )
        session.commit()


def user_key() -> str:
    return new_host_key().public_line  # any Ed25519 public key line will do


def certificate(
    ca_key: ed25519.Ed25519PrivateKey,
    principals: list[str],
    *,
    kind: SSHCertificateType = SSHCertificateType.USER,
    valid: tuple[timedelta, timedelta] = (timedelta(minutes=-1), timedelta(hours=1)),
) -> tuple[str, str]:
    """(key type, base64) of a certificate signed by `ca_key`, as sshd's %t and %k."""
    now = datetime.now(UTC)
    builder = (
        SSHCertificateBuilder()
        .public_key(parse_public_key(user_key()).key)
        .serial(1)
        .type(kind)
        .key_id(b"test")
        .valid_after(int((now + valid[0]).timestamp()))
        .valid_before(int((now + valid[1]).timestamp()))
    )
    # No principals: OpenSSH reads that as "valid for any principal".
    builder = (
        builder.valid_principals([p.encode() for p in principals])
        if principals
        else builder.valid_for_all_principals()
    )
    key_type, data = builder.sign(ca_key).public_bytes().decode().split()[:2]
    return key_type, data


def ask(
    web: FlaskClient,
    cert: tuple[str, str],
    *,
    secret: str | None = GATEWAY_SECRET,
    user: str = "devspace",
) -> TestResponse:
    headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
    form = {"user": user, "key_type": cert[0], "certificate": cert[1]}
    return web.post(PATH, data=form, headers=headers)


def test_the_owners_running_sidecars_and_nothing_else_are_permitted(
    app: Flask, web: FlaskClient, ca_key: ed25519.Ed25519PrivateKey
) -> None:
    alice, bob = make_user(app, "alice"), make_user(app, "bob")
    add_space(app, alice, "one", phase="running", pod_ip="10.0.0.9")
    add_space(app, alice, "two", phase="running", pod_ip="10.0.0.10")
    add_space(app, alice, "off", phase="stopped", pod_ip=None)
    add_space(app, alice, "stale", phase="stopped", pod_ip="10.0.0.11")
    add_space(app, alice, "stopping", phase="running", pod_ip="10.0.0.12", stopped=True)
    add_space(app, alice, "new", phase="starting", pod_ip="10.0.0.13")
    add_space(app, alice, "gone", phase="running", pod_ip="10.0.0.14", deleted_at=datetime.now(UTC))
    add_space(app, bob, "bobs", phase="running", pod_ip="10.0.0.20")

    answer = ask(web, certificate(ca_key, [alice]))
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    assert answer.get_data(as_text=True) == (
        f'restrict,port-forwarding,permitopen="10.0.0.10:2222",permitopen="10.0.0.9:2222" {alice}\n'
    )


def test_no_running_space_is_an_empty_answer(
    app: Flask, web: FlaskClient, ca_key: ed25519.Ed25519PrivateKey
) -> None:
    alice = make_user(app)
    add_space(app, alice, "off", phase="stopped")
    answer = ask(web, certificate(ca_key, [alice]))
    assert answer.status_code == 200
    assert answer.get_data() == b""


def test_a_certificate_from_a_still_trusted_previous_ca_is_accepted(
    app: Flask, web: FlaskClient, previous_ca_key: ed25519.Ed25519PrivateKey
) -> None:
    alice = make_user(app)
    add_space(app, alice, "one", phase="running", pod_ip="10.0.0.9")
    assert (
        ask(web, certificate(previous_ca_key, [alice]))
        .get_data(as_text=True)
        .endswith(f" {alice}\n")
    )


@pytest.mark.parametrize(
    "secret", [None, "", "wrong-" + GATEWAY_SECRET[6:], GATEWAY_SECRET[:-1], GATEWAY_SECRET + "x"]
)
def test_anyone_but_the_gateway_is_refused(
    app: Flask, web: FlaskClient, ca_key: ed25519.Ed25519PrivateKey, secret: str | None
) -> None:
    alice = make_user(app)
    answer = ask(web, certificate(ca_key, [alice]), secret=secret)
    assert answer.status_code == 401
    assert "Bearer" in answer.headers["WWW-Authenticate"]


def test_basic_credentials_carrying_the_secret_are_refused(
    app: Flask, web: FlaskClient, ca_key: ed25519.Ed25519PrivateKey
) -> None:
    cert = certificate(ca_key, [make_user(app)])
    basic = base64.b64encode(f"devspace:{GATEWAY_SECRET}".encode()).decode()
    answer = web.post(
        PATH,
        data={"user": "devspace", "key_type": cert[0], "certificate": cert[1]},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert answer.status_code == 401


def test_without_a_gateway_secret_the_endpoint_is_unavailable(
    env: dict[str, str], ca_key: ed25519.Ed25519PrivateKey
) -> None:
    del env["DEVSPACE_GATEWAY_SECRET"]
    config = dataclasses.replace(load_config(env), ssh_ca=CertificateAuthority(ca_key))
    assert config.gateway_secret is None
    app = create_app(config)
    answer = ask(app.test_client(), ("ssh-ed25519-cert-v01@openssh.com", "AAAA"), secret="")
    assert answer.status_code == 503


@pytest.mark.parametrize(
    "change",
    [
        "other-ca",
        "expired",
        "not-yet-valid",
        "host-certificate",
        "no-principal",
        "two-principals",
        "unknown-user",
        "disabled-user",
        "not-a-user-id",
    ],
)
def test_certificates_and_users_it_will_not_vouch_for_are_refused(
    app: Flask, web: FlaskClient, ca_key: ed25519.Ed25519PrivateKey, change: str
) -> None:
    alice = make_user(app)
    add_space(app, alice, "one", phase="running", pod_ip="10.0.0.9")
    hour = timedelta(hours=1)
    cert = {
        "other-ca": lambda: certificate(ed25519.Ed25519PrivateKey.generate(), [alice]),
        "expired": lambda: certificate(ca_key, [alice], valid=(-2 * hour, -hour)),
        "not-yet-valid": lambda: certificate(ca_key, [alice], valid=(hour, 2 * hour)),
        "host-certificate": lambda: certificate(ca_key, [alice], kind=SSHCertificateType.HOST),
        "no-principal": lambda: certificate(ca_key, []),
        "two-principals": lambda: certificate(ca_key, [alice, alice + "x"]),
        "unknown-user": lambda: certificate(ca_key, ["0c1e7a55-0000-4000-8000-000000000000"]),
        "disabled-user": lambda: certificate(ca_key, [make_user(app, "dis", disabled=True)]),
        "not-a-user-id": lambda: certificate(ca_key, ['x" y']),
    }[change]()
    answer = ask(web, cert)
    assert answer.status_code == 403, answer.get_data(as_text=True)
    assert b"permitopen" not in answer.get_data()


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"user": "devspace", "key_type": "ssh-ed25519"},
        {"user": "devspace", "key_type": "ssh-ed25519-cert-v01@openssh.com", "certificate": "x"},
    ],
)
def test_malformed_requests_are_refused(web: FlaskClient, form: dict[str, str]) -> None:
    answer = web.post(PATH, data=form, headers={"Authorization": f"Bearer {GATEWAY_SECRET}"})
    assert answer.status_code in (400, 403)


def test_a_plain_public_key_is_not_a_certificate(app: Flask, web: FlaskClient) -> None:
    key_type, data = user_key().split()[:2]
    assert ask(web, (key_type, data)).status_code == 403


def test_a_users_disabling_takes_effect_at_the_next_question(
    app: Flask, web: FlaskClient, ca_key: ed25519.Ed25519PrivateKey
) -> None:
    alice = make_user(app)
    add_space(app, alice, "one", phase="running", pod_ip="10.0.0.9")
    cert = certificate(ca_key, [alice])
    assert ask(web, cert).status_code == 200
    with app.app_context(), state().sessions() as session:
        user = session.get(User, alice)
        assert user is not None
        user.disabled = True
        session.commit()
    assert ask(web, cert).status_code == 403


def test_the_endpoint_is_not_in_the_public_api_document(web: FlaskClient) -> None:
    paths = web.get("/api/v1/openapi.json").get_json()["paths"]
    assert not [path for path in paths if "principals" in path or "internal" in path]


def test_ipv6_addresses_are_bracketed_and_non_addresses_skipped() -> None:
    line = principals_line("u-1", ["fd00::7", "10.0.0.1", 'x",permitopen="*:*', "10.0.0.1"])
    assert line == (
        'restrict,port-forwarding,permitopen="10.0.0.1:2222",permitopen="[fd00::7]:2222" u-1\n'
    )
    assert principals_line("u-1", ["not-an-ip"]) == ""


def _problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    return caught.value.problems


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("short-0123456789", "too short"),
        ("a" * 40, "placeholder"),
        (SECRET_KEY, "equals DEVSPACE_SECRET_KEY"),
    ],
)
def test_an_unsafe_gateway_secret_is_refused(env: dict[str, str], value: str, says: str) -> None:
    env["DEVSPACE_GATEWAY_SECRET"] = value
    (problem,) = _problems(env)
    assert problem.startswith("DEVSPACE_GATEWAY_SECRET ")
    assert says in problem


def test_the_gateway_secret_can_come_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "gateway-secret"
    path.write_text(GATEWAY_SECRET + "\n")
    del env["DEVSPACE_GATEWAY_SECRET"]
    env["DEVSPACE_GATEWAY_SECRET_FILE"] = str(path)
    config: Config = load_config(env)
    assert config.gateway_secret == GATEWAY_SECRET
    assert GATEWAY_SECRET not in repr(config)
    env["DEVSPACE_GATEWAY_SECRET"] = GATEWAY_SECRET
    assert "both set" in _problems(env)[0]
    path.write_text("too-short\n")
    del env["DEVSPACE_GATEWAY_SECRET"]
    assert "DEVSPACE_GATEWAY_SECRET_FILE" in _problems(env)[0]
