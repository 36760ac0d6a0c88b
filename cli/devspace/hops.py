"""The SSH servers on the way to a space and who the user is to them: a `Hop` (address, login,
pinned host key), the user's `Identity` (key and certificate), dialling a hop, and the errors
and messages for a wrong host key or a refused certificate. `devspace.ssh.Connection` puts them
together; `devspace.jump` makes the gateway hop with OpenSSH and reports in the same terms.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity

from devspace.errors import AuthError, SshError, UsageError


def sha256_fingerprint(public_key_blob: bytes) -> str:
    """Return OpenSSH's `SHA256:…` fingerprint of a public key in SSH wire format."""
    digest = base64.b64encode(hashlib.sha256(public_key_blob).digest()).decode()
    return f"SHA256:{digest.rstrip('=')}"


class HostKeyMismatch(SshError):
    """The server presented a host key other than the pinned one."""


class CertificateRefused(AuthError):
    """A hop refused the user's certificate (expired, not yet valid, wrong user or CA)."""


@dataclass(frozen=True)
class PinnedHostKey:
    """The host key a hop must present: its fingerprint and, when the API published the key
    itself, its type and the key (`type base64`, what OpenSSH's known_hosts needs)."""

    fingerprint: str
    key_type: str | None = None
    key: str | None = None

    @classmethod
    def published(
        cls, public_key: str | None = None, fingerprint: str | None = None
    ) -> PinnedHostKey:
        """Build the pin from what the API publishes: an OpenSSH key line, a fingerprint, or both.

        Raises:
            UsageError: neither is given, the key line is malformed, or the two disagree.
        """
        if public_key is None:
            if not fingerprint or not fingerprint.startswith("SHA256:"):
                raise UsageError(f"not a SHA256 host key fingerprint: {fingerprint!r}")
            return cls(fingerprint)
        try:
            key_type, blob, *_ = public_key.split()
            from_key = sha256_fingerprint(base64.b64decode(blob, validate=True))
        except ValueError as error:
            raise UsageError(f"not an OpenSSH public key line: {public_key[:80]!r}") from error
        if fingerprint is not None and fingerprint != from_key:
            raise UsageError(
                f"published host key {from_key} does not match fingerprint {fingerprint}"
            )
        return cls(from_key, key_type, f"{key_type} {blob}")


@dataclass(frozen=True)
class Hop:
    """One SSH server on the way: address, login user, pinned host key, and a name for messages."""

    host: str
    port: int
    user: str
    host_key: PinnedHostKey
    name: str = ""

    def __str__(self) -> str:
        return self.name or f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Identity:
    """The user's private key and the OpenSSH certificate the server signed for it."""

    private_key: Path
    certificate: Path

    def load(self) -> tuple[paramiko.PKey, SSHCertificate]:
        """Return the key with its certificate attached, and the parsed certificate.

        Raises:
            AuthError: a file is missing or unreadable, or the certificate is not for this key.
        """
        try:
            certificate = load_ssh_public_identity(self.certificate.read_bytes())
            key = paramiko.PKey.from_path(self.private_key)
            key.load_certificate(str(self.certificate))
        except OSError as error:
            raise AuthError(
                f"cannot read {error.filename}: {error.strerror}; run `devspace login`"
            ) from error
        except (ValueError, paramiko.SSHException) as error:
            raise AuthError(
                f"unusable SSH key or certificate ({error}); run `devspace login`"
            ) from error
        if not isinstance(certificate, SSHCertificate):
            raise AuthError(f"{self.certificate} holds a plain key, not a certificate")
        return key, certificate


def dial(hop: Hop, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((hop.host, hop.port), timeout=timeout)
    except socket.gaierror as error:
        raise SshError(f"cannot resolve {hop.host} ({hop}): {error.strerror}") from error
    except ConnectionRefusedError as error:
        raise SshError(
            f"connection refused by {hop} at {hop.host}:{hop.port} — nothing listens there; "
            "check the server address, or whether the gateway is running"
        ) from error
    except TimeoutError as error:
        raise SshError(f"timed out connecting to {hop} at {hop.host}:{hop.port}") from error
    except OSError as error:
        raise SshError(f"cannot reach {hop} at {hop.host}:{hop.port}: {error.strerror}") from error
    # Pipelined SFTP sends many small packets; Nagle's algorithm made it 2-3x slower.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def tunnel(
    transport: paramiko.Transport, gateway: Hop, target: Hop, timeout: float
) -> paramiko.Channel:
    """A `direct-tcpip` channel through `gateway` (its open `transport`) to `target`.

    Raises: SshError if the gateway refuses (see `gateway_refused`) or the connection fails.
    """
    try:
        return transport.open_channel(
            "direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=timeout
        )
    except paramiko.ChannelException as error:
        raise gateway_refused(gateway, target, error.text) from error
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise SshError(f"{gateway} could not reach {target}: {error}") from error


def gateway_refused(gateway: Hop, target: Hop, reason: str) -> SshError:
    """The error for `gateway` refusing to connect to `target`, saying `reason`."""
    return SshError(
        f"{gateway} refused to connect to {target} ({target.host}:{target.port}): {reason} — "
        "the space is not running or is not yours; check `devspace spaces show`"
    )


def mismatch(hop: Hop, presented: str) -> HostKeyMismatch:
    """The error for `hop` presenting the host key with fingerprint (or description) `presented`."""
    return HostKeyMismatch(
        f"host key mismatch for {hop}: expected {hop.host_key.fingerprint}, got "
        f"{presented} — the pod was replaced or someone is intercepting the connection; "
        "run `devspace spaces show` to see the published key, and do not connect until "
        "they agree"
    )


def refusal(hop: Hop, certificate: SSHCertificate) -> str:
    now = time.time()

    def when(seconds: int) -> str:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    if certificate.valid_before <= now:
        return (
            f"{hop} refused your SSH certificate: certificate expired at "
            f"{when(certificate.valid_before)}; run `devspace login` to get a new one"
        )
    if certificate.valid_after > now:
        return (
            f"{hop} refused your SSH certificate: certificate not valid before "
            f"{when(certificate.valid_after)}; check this computer's clock"
        )
    principals = ", ".join(p.decode(errors="replace") for p in certificate.valid_principals)
    key_id = certificate.key_id.decode(errors="replace")
    return (
        f"{hop} refused your SSH certificate (key id {key_id}, "
        f"principals {principals or 'none'}): it is for another user or signed by an authority "
        f"{hop} does not trust; run `devspace login` again, and check that the space is yours"
    )
