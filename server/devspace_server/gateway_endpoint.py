"""Where people reach the SSH gateway, read as part of `config.load_config`.

| setting (`DEVSPACE_…`)   | meaning                                                        |
|--------------------------|----------------------------------------------------------------|
| `GATEWAY_ADDRESS`        | `host` or `host:port` (default port 22) the CLI dials          |
| `GATEWAY_HOST_KEYS_FILE` | the gateway's public host keys, one OpenSSH line each          |

The CLI pins the gateway's host keys from here, as it pins each sidecar's from its space:
nobody is asked to trust a key on first use. Only public keys: the API never holds the
gateway's private host key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from devspace_server.ca import parse_trusted_keys

KEYS = ("gateway_address", "gateway_host_keys_file")
DEFAULT_PORT = 22
GATEWAY_USER = "devspace"
"""The one login the gateway accepts; who is asking is in the certificate."""
MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class GatewayEndpoint:
    """The public address of the SSH gateway and the host keys it presents."""

    host: str
    port: int
    host_keys: tuple[str, ...]
    """OpenSSH public key lines, as in known_hosts without the host name."""
    user: str = GATEWAY_USER


def parse_address(raw: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` as (host, port). Raises `ValueError`."""
    text = raw.strip()
    try:
        parts = urlsplit(f"ssh://{text}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or parts.username or parts.path or parts.query or parts.fragment:
        raise ValueError(
            f"is {raw!r}: set it to the gateway's public host name or address, "
            "optionally with :port (for example ssh.devspace.example.com:2222)"
        )
    if port == 0:
        raise ValueError(f"is {raw!r}: the port must be between 1 and 65535")
    return host, port or DEFAULT_PORT


def _host_keys(path: str) -> tuple[str, ...]:
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"names {path}, which is too large to be a public key file")
        keys = parse_trusted_keys(data.decode())
    except OSError as exc:
        raise ValueError(f"names {path}, which cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise ValueError(f"names {path}, which is not text: give the .pub file") from None
    except ValueError as exc:
        raise ValueError(f"names {path}: {exc}; give the gateway's .pub host key file") from None
    if not keys:
        raise ValueError(f"names {path}, which holds no public key")
    return tuple(key.openssh() for key in keys)


def parse_gateway(
    raw: Callable[[str], str | None], problem: Callable[[str, str], None]
) -> GatewayEndpoint | None:
    """The gateway endpoint from the two settings; None when neither is set.

    Problems (one set without the other, a bad address, an unreadable or empty key file) are
    reported through `problem(key, message)`.
    """
    address, keys_file = raw("gateway_address"), raw("gateway_host_keys_file")
    if not address and not keys_file:
        return None
    if not address or not keys_file:
        missing = "gateway_address" if not address else "gateway_host_keys_file"
        given = "gateway_host_keys_file" if not address else "gateway_address"
        problem(given, f"is set without DEVSPACE_{missing.upper()}: set both or neither")
        return None
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        problem("gateway_address", str(exc))
        return None
    try:
        host_keys = _host_keys(keys_file)
    except ValueError as exc:
        problem("gateway_host_keys_file", str(exc))
        return None
    return GatewayEndpoint(host, port, host_keys)
