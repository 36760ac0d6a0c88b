"""From a space's name to an SSH connection to its sidecar, through the gateway.

Everything a connection needs comes from the server, never from the network path: the
sidecar's address and host key from the space, the gateway's address and host keys from
`/api/v1/ssh/gateway`, and a certificate for the CLI's own key (`devspace.certificates`).
Both hops are pinned, so nothing is trusted on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from devspace.api import Api
from devspace.certificates import ensure_identity
from devspace.errors import DevspaceError, ServerError, UsageError
from devspace.ssh import Connection, Hop, PinnedHostKey

SIDECAR_PORT = 2222
"""The port every sidecar's sshd listens on, and the only one the gateway lets through."""
SIDECAR_USER = "dev"
"""The account the sidecar's sshd runs as; who connects is in the certificate."""


class SpaceNotRunning(DevspaceError):
    """The space exists but its pod is not running, so there is nothing to connect to."""


@dataclass(frozen=True)
class SpaceTarget:
    """A running space as the SSH layer needs it."""

    name: str
    sidecar: Hop
    gateway: Hop


def space_path(name: str) -> str:
    """The API path of the space `name`."""
    return f"/spaces/{quote(name, safe='')}"


def sidecar_hop(space: dict[str, Any]) -> Hop:
    """The sidecar of `space` (as the API shows it), its host key pinned.

    Raises `SpaceNotRunning` unless the pod is running and ready with an address.
    """
    name = str(space["name"])
    if space.get("stopped"):
        raise SpaceNotRunning(
            f"space {name} is stopped: start it with `devspace spaces start {name}`"
        )
    if space.get("phase") != "running" or not space.get("ready") or not space.get("pod_ip"):
        reason = space.get("reason") or "no reason given yet"
        raise SpaceNotRunning(
            f"space {name} is {space.get('phase', 'unknown')}, not running: {reason} "
            f"(`devspace status {name}` shows more)"
        )
    key = space["host_key"]
    try:
        pin = PinnedHostKey.published(key.get("public_key"), key.get("fingerprint"))
    except UsageError as error:
        raise ServerError(
            f"the server published an unusable host key for {name}: {error}"
        ) from error
    return Hop(str(space["pod_ip"]), SIDECAR_PORT, SIDECAR_USER, pin, name=f"space {name}")


def gateway_hop(api: Api) -> Hop:
    """The server's SSH gateway, its host key pinned (an Ed25519 one when it has several).

    Raises `ServerError` when the server has no gateway configured or publishes a bad key.
    """
    found = api.call("GET", "/ssh/gateway")
    keys = [str(line) for line in found.get("host_keys", [])]
    if not keys:
        raise ServerError(f"{api.server} publishes no host key for its SSH gateway")
    preferred = next((k for k in keys if k.startswith("ssh-ed25519 ")), keys[0])
    try:
        pin = PinnedHostKey.published(preferred)
    except UsageError as error:
        raise ServerError(
            f"{api.server} published an unusable gateway host key: {error}"
        ) from error
    return Hop(str(found["host"]), int(found["port"]), str(found["user"]), pin, name="the gateway")


def locate(api: Api, name: str) -> SpaceTarget:
    """Where the running space `name` is. Raises `SpaceNotRunning`, `AuthError`, `ServerError`."""
    space = api.call("GET", space_path(name))
    return SpaceTarget(name, sidecar_hop(space), gateway_hop(api))


def connect(api: Api, name: str, *, timeout: float = 15.0) -> Connection:
    """A connection (not yet open) to the running space `name`, with a fresh certificate.

    Raises `SpaceNotRunning`, `AuthError` (not logged in, certificate refused by the server)
    and `ServerError`; opening it raises what `Connection.open` raises.
    """
    target = locate(api, name)
    identity = ensure_identity(api)
    return Connection(target.sidecar, identity, gateway=target.gateway, timeout=timeout)
