"""`GET /api/v1/ssh/gateway`: where the CLI reaches the SSH gateway and which host keys it pins,
and how the two settings behind it are checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask

from devspace_server.config import load_config
from devspace_server.errors import ConfigError


def public_line(comment: str = "gateway") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}"


@pytest.fixture
def host_keys(tmp_path: Path) -> tuple[Path, list[str]]:
    lines = [public_line("a"), public_line("b")]
    path = tmp_path / "ssh_host_keys.pub"
    path.write_text(f"# the gateway's keys\n{lines[0]}\n\n{lines[1]}\n")
    return path, [" ".join(line.split()[:2]) for line in lines]


def test_the_gateway_is_published_with_its_host_keys(
    settings: dict[str, str],
    host_keys: tuple[Path, list[str]],
    make_app: object,
) -> None:
    path, expected = host_keys
    config = load_config(
        settings
        | {
            "DEVSPACE_GATEWAY_ADDRESS": "ssh.devspace.example.com:2222",
            "DEVSPACE_GATEWAY_HOST_KEYS_FILE": str(path),
        }
    )
    app: Flask = make_app(config)  # type: ignore[operator]
    response = app.test_client().get("/api/v1/ssh/gateway")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "host": "ssh.devspace.example.com",
        "port": 2222,
        "user": "devspace",
        "host_keys": expected,
    }


def test_without_a_gateway_the_endpoint_says_what_the_operator_must_set(app: Flask) -> None:
    response = app.test_client().get("/api/v1/ssh/gateway")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert "DEVSPACE_GATEWAY_ADDRESS" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("address", "port"),
    [("gw.example.com", 22), ("10.1.2.3:2200", 2200), ("[2001:db8::1]:2222", 2222)],
)
def test_addresses_with_and_without_a_port_are_understood(
    settings: dict[str, str], host_keys: tuple[Path, list[str]], address: str, port: int
) -> None:
    config = load_config(
        settings
        | {
            "DEVSPACE_GATEWAY_ADDRESS": address,
            "DEVSPACE_GATEWAY_HOST_KEYS_FILE": str(host_keys[0]),
        }
    )
    assert config.gateway is not None
    assert config.gateway.port == port


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"DEVSPACE_GATEWAY_ADDRESS": "gw.example.com"}, "set both or neither"),
        ({"DEVSPACE_GATEWAY_HOST_KEYS_FILE": "KEYS"}, "set both or neither"),
        (
            {"DEVSPACE_GATEWAY_ADDRESS": "ssh://gw/x", "DEVSPACE_GATEWAY_HOST_KEYS_FILE": "KEYS"},
            "public host name or address",
        ),
        (
            {"DEVSPACE_GATEWAY_ADDRESS": "gw:99999", "DEVSPACE_GATEWAY_HOST_KEYS_FILE": "KEYS"},
            "public host name or address",
        ),
        (
            {"DEVSPACE_GATEWAY_ADDRESS": "gw", "DEVSPACE_GATEWAY_HOST_KEYS_FILE": "/nonexistent"},
            "cannot be read",
        ),
        (
            {"DEVSPACE_GATEWAY_ADDRESS": "gw", "DEVSPACE_GATEWAY_HOST_KEYS_FILE": "EMPTY"},
            "holds no public key",
        ),
        (
            {"DEVSPACE_GATEWAY_ADDRESS": "gw", "DEVSPACE_GATEWAY_HOST_KEYS_FILE": "PRIVATE"},
            "give the gateway's .pub host key file",
        ),
    ],
)
def test_bad_gateway_settings_are_refused_with_what_to_fix(
    settings: dict[str, str],
    host_keys: tuple[Path, list[str]],
    tmp_path: Path,
    changes: dict[str, str],
    message: str,
) -> None:
    empty = tmp_path / "empty.pub"
    empty.write_text("# nothing yet\n")
    private = tmp_path / "ssh_host_ed25519_key"
    private.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    files = {"KEYS": str(host_keys[0]), "EMPTY": str(empty), "PRIVATE": str(private)}
    changes = {k: files.get(v, v) for k, v in changes.items()}
    with pytest.raises(ConfigError) as caught:
        load_config(settings | changes)
    problems = " ".join(caught.value.problems)
    assert "DEVSPACE_GATEWAY_" in problems
    assert message in problems
