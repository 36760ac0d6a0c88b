"""The space's Secrets: the sidecar's host key, the CA keys it trusts, and who may log in.

Three Secrets rather than one, so that each is mounted where sshd-image/ expects it and the
host key can be mounted into the sidecar alone.
"""

from __future__ import annotations

import hashlib

from kubernetes import client

from devspace_server.kube.meta import object_meta
from devspace_server.kube.spec import (
    CA_SECRET,
    HOST_KEY_SECRET,
    PRINCIPALS_SECRET,
    ClusterSettings,
    SpaceSpec,
)

# On the Deployment (applied after the Secrets): the digest of the Secrets' content as last
# applied, so a full resync, which may not read Secrets back, knows whether they are current.
SECRETS_DIGEST = "devspace.dev/secrets-digest"
HOST_KEY_FILE = "ssh_host_ed25519_key"
CA_FILE = "ca.pub"
PRINCIPALS_FILE = "principals"


def _lines(values: tuple[str, ...]) -> str:
    return "".join(f"{value.strip()}\n" for value in values)


def _secret(
    name: str, key: str, value: str, spec: SpaceSpec, settings: ClusterSettings
) -> client.V1Secret:
    # string_data rather than data: server-side apply then owns exactly one readable key,
    # and the builder stays free of encoding.
    return client.V1Secret(
        api_version="v1",
        kind="Secret",
        type="Opaque",
        metadata=object_meta(name, spec, settings),
        string_data={key: value},
    )


def make_host_key_secret(spec: SpaceSpec, settings: ClusterSettings) -> client.V1Secret:
    """The sidecar's OpenSSH host private key, mounted at /etc/devspace/host-key/."""
    key = (
        spec.host_private_key
        if spec.host_private_key.endswith("\n")
        else (f"{spec.host_private_key}\n")
    )
    return _secret(HOST_KEY_SECRET, HOST_KEY_FILE, key, spec, settings)


def make_ca_secret(spec: SpaceSpec, settings: ClusterSettings) -> client.V1Secret:
    """The SSH CA public keys the sidecar trusts (TrustedUserCAKeys), one a line."""
    return _secret(CA_SECRET, CA_FILE, _lines(spec.ca_public_keys), spec, settings)


def make_principals_secret(spec: SpaceSpec, settings: ClusterSettings) -> client.V1Secret:
    """The certificate principals allowed to log in (AuthorizedPrincipalsFile), one a line."""
    return _secret(PRINCIPALS_SECRET, PRINCIPALS_FILE, _lines(spec.principals), spec, settings)


def secrets_digest(spec: SpaceSpec) -> str:
    """A digest of everything the space's Secrets hold (SHA-256, hex)."""
    content = "\0".join(
        (spec.host_private_key, _lines(spec.ca_public_keys), _lines(spec.principals))
    )
    return hashlib.sha256(content.encode()).hexdigest()
