"""The SSH certificate authority: signs users' public keys as short-lived OpenSSH certificates.

Every sshd of devspace (the gateway and each space's sidecar) trusts this CA's public key
(`TrustedUserCAKeys`) and lets in a certificate whose principal is listed for the space.
The principal is the user's immutable id (`User.id`), never an email or a username, which
can change hands. Certificates live for hours and are never revoked: expiry is revocation.

Rotation: the server signs with one Ed25519 key and keeps trusting the public keys of the
keys it signed with before (`DEVSPACE_SSH_CA_PREVIOUS_PUBLIC_KEYS`) until the certificates
those signed have expired; `CertificateAuthority.trusted_public_keys` is the set each sshd
must trust.

Nothing here knows about Flask or the database: `api/ssh.py` decides who gets what.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    SSHCertificate,
    SSHCertificateBuilder,
    SSHCertificateType,
    SSHCertPublicKeyTypes,
)

ACCEPTED = "ssh-ed25519, ecdsa-sha2-nistp256/384/521, or ssh-rsa of 3072 bits or more"
MIN_RSA_BITS = 3072
# Clocks of laptops, servers and pods disagree; a certificate valid only from "now" would be
# refused by an sshd whose clock is a few seconds behind ours.
CLOCK_SKEW = timedelta(seconds=60)
# PTY and port forwarding are what the CLI needs. No agent or X11 forwarding and no user rc:
# each would let a pod reach back into the laptop or run code outside the session's control.
EXTENSIONS = (b"permit-port-forwarding", b"permit-pty")
CA_COMMENT = "devspace-ca"
MAX_KEY_FILE_BYTES = 64 * 1024
_CERT_SUFFIX = "-cert-v01@openssh.com"
_PRIVATE_MARKERS = ("PRIVATE KEY-----", "PuTTY-User-Key-File")
_MAKE_CA_KEY = "ssh-keygen -t ed25519 -N '' -C devspace-ca -f <file>"


class UnacceptableKey(ValueError):
    """A public key that cannot be certified; `str()` says why and what is accepted."""


@dataclass(frozen=True)
class PublicKey:
    """A checked OpenSSH public key: strong enough to certify (or to trust as a CA)."""

    key: SSHCertPublicKeyTypes
    type_name: str
    """The OpenSSH key type, such as `ssh-ed25519`."""
    fingerprint: str
    """`SHA256:<base64>`, as `ssh-keygen -l` prints it."""

    def openssh(self, comment: str = "") -> str:
        """The key as one OpenSSH line, with `comment` if given."""
        line = _openssh(self.key)
        return f"{line} {comment}" if comment else line


@dataclass(frozen=True)
class SshCertificate:
    """An issued user certificate and the facts about it worth showing and auditing."""

    line: str
    """The certificate as one OpenSSH line, for a `<key>-cert.pub` file."""
    serial: int
    key_id: str
    principals: tuple[str, ...]
    valid_after: datetime
    valid_before: datetime


def fingerprint(key: SSHCertPublicKeyTypes) -> str:
    """The SHA-256 fingerprint of `key` as OpenSSH prints it: `SHA256:` and unpadded base64."""
    digest = serialization.ssh_key_fingerprint(key, hashes.SHA256())
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _openssh(key: SSHCertPublicKeyTypes) -> str:
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def _type_name(key: SSHCertPublicKeyTypes) -> str:
    return _openssh(key).split(" ", 1)[0]


def parse_public_key(text: str) -> PublicKey:
    """`text`, one OpenSSH public key line (`<type> <base64> [comment]`), checked.

    Raises `UnacceptableKey` saying what was sent instead (a private key, a certificate,
    several lines, something else) or why the key is too weak, and what is accepted.
    """
    text = text.strip()
    if any(marker in text for marker in _PRIVATE_MARKERS):
        raise UnacceptableKey(
            "This is a private key, which must never leave your machine; it was neither "
            "stored nor logged. Send the public key instead: the .pub file next to it, "
            "such as ~/.ssh/id_ed25519.pub"
        )
    if not text:
        raise UnacceptableKey(f"Send an OpenSSH public key line ({ACCEPTED})")
    if len(text.splitlines()) > 1:
        raise UnacceptableKey("Send exactly one public key line, not several")
    # The comment (third field) may be anything, even non-ASCII; only type and key are parsed.
    type_name, key_data = [*text.split(maxsplit=2), "", ""][:2]
    if type_name.endswith(_CERT_SUFFIX):
        raise UnacceptableKey(
            "This is an SSH certificate, not a public key: send the public key it was "
            "issued for (the .pub file without -cert)"
        )
    if type_name == "ssh-dss":
        raise UnacceptableKey(f"DSA keys are too weak and OpenSSH dropped them: use {ACCEPTED}")
    if type_name.startswith("sk-"):
        raise UnacceptableKey(f"Security-key (FIDO) keys are not supported yet: use {ACCEPTED}")
    try:
        if not (type_name + key_data).isascii():
            raise ValueError("not ASCII")
        key = serialization.load_ssh_public_key(f"{type_name} {key_data}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise UnacceptableKey(
            f"This is not an OpenSSH public key line such as 'ssh-ed25519 AAAA… you@laptop': "
            f"send the contents of your .pub file ({ACCEPTED})"
        ) from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise UnacceptableKey(
            f"This RSA key has {key.key_size} bits, too few to be safe: use an RSA key of "
            f"{MIN_RSA_BITS} bits or more, or better `ssh-keygen -t ed25519`"
        )
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise UnacceptableKey(f"{type_name} keys are not accepted: use {ACCEPTED}")
    return PublicKey(key, _type_name(key), fingerprint(key))


def parse_trusted_keys(text: str) -> tuple[PublicKey, ...]:
    """The keys of a `TrustedUserCAKeys` file: one per line, blank and `#` lines ignored.

    Raises `ValueError` naming the line that is not an acceptable public key.
    """
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            found.append(parse_public_key(line))
        except UnacceptableKey as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return tuple(found)


def load_private_key(name: str | Path) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 CA key in the file `name` (OpenSSH or PEM format, unencrypted).

    As OpenSSH does, a file we own must be readable by us alone; one owned by someone else
    (Kubernetes mounts Secrets root-owned, group-readable for the pod's fsGroup) may be
    readable by its group, never by others. Raises `ValueError` saying what to fix.
    """
    path = Path(name)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"names {path}, which is not a regular file")
        with path.open("rb") as file:
            data = file.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"names {path}, which cannot be read ({exc.strerror})") from exc
    mode = info.st_mode & 0o777
    if mode & stat.S_IRWXO or (mode & stat.S_IRWXG and info.st_uid == os.geteuid()):
        raise ValueError(
            f"names {path}, which others may read (mode {mode:o}): chmod 600 it (or, for a "
            "Kubernetes Secret, mount it with defaultMode 0400 or 0440)"
        )
    key = _private_key(data)
    if key is None:
        raise ValueError(
            f"names {path}, which holds no unencrypted OpenSSH or PEM private key: "
            f"make one with `{_MAKE_CA_KEY}`"
        )
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(
            f"names {path}, whose key is {type(key).__name__.removesuffix('PrivateKey')}: "
            f"the SSH CA key must be Ed25519; make one with `{_MAKE_CA_KEY}`"
        )
    return key


def _private_key(data: bytes) -> object | None:
    """The private key in `data`, or None if there is none we can use without a passphrase."""
    if len(data) > MAX_KEY_FILE_BYTES:
        return None
    loaders = (serialization.load_ssh_private_key, serialization.load_pem_private_key)
    for load in loaders:
        try:
            return load(data, password=None)
        # TypeError: encrypted; the server has nobody to type a passphrase.
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return None


def new_private_key_file_content() -> bytes:
    """A fresh Ed25519 CA key in OpenSSH format, unencrypted, for a 0600 file."""
    return _openssh_private(ed25519.Ed25519PrivateKey.generate())


def _openssh_private(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class HostKey:
    """A sidecar's sshd host key: the private half for its Secret, the rest to publish."""

    private_openssh: str = field(repr=False)
    """The unencrypted private key in OpenSSH format, for sshd's `HostKey` file."""
    public_line: str
    """The public key as one OpenSSH line, for a client's known_hosts."""
    fingerprint: str
    """`SHA256:<base64>`, what the CLI pins and `ssh` shows."""


def new_host_key() -> HostKey:
    """A fresh Ed25519 host key for a space's sidecar."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key()
    return HostKey(_openssh_private(key).decode(), _openssh(public), fingerprint(public))


class CertificateAuthority:
    """Signs user certificates with one Ed25519 key; trusts it and the previous CA keys."""

    def __init__(
        self, private_key: ed25519.Ed25519PrivateKey, previous: Iterable[PublicKey] = ()
    ) -> None:
        self._private_key = private_key
        own = private_key.public_key()
        self.public_key = PublicKey(own, _type_name(own), fingerprint(own))
        self.previous = tuple(
            {
                k.fingerprint: k for k in previous if k.fingerprint != self.public_key.fingerprint
            }.values()
        )

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.public_key.fingerprint})"

    @property
    def trusted_public_keys(self) -> tuple[str, ...]:
        """The CA public keys every sshd must trust, as OpenSSH lines: the current first."""
        return (
            self.public_key.openssh(CA_COMMENT),
            *(k.openssh(f"{CA_COMMENT}-previous") for k in self.previous),
        )

    def trusted_keys_file(self) -> str:
        """`trusted_public_keys` as the content of a `TrustedUserCAKeys` file."""
        return "".join(f"{line}\n" for line in self.trusted_public_keys)

    def sign(
        self,
        key: PublicKey,
        *,
        principal: str,
        key_id: str,
        lifetime: timedelta,
        now: datetime | None = None,
    ) -> SshCertificate:
        """A user certificate for `key`, valid for `principal` from a minute before `now`
        (default: the current time) for `lifetime`, with a random serial.

        Raises `ValueError` if `principal` or `key_id` is empty or `lifetime` not positive.
        """
        if not principal or not key_id or lifetime <= timedelta(0):
            raise ValueError("a certificate needs a principal, a key id and a positive lifetime")
        now = now or datetime.now(UTC)
        valid_after = int((now - CLOCK_SKEW).timestamp())
        valid_before = int((now + lifetime).timestamp())
        # Random, never 0 (OpenSSH's KRLs treat serial 0 as "no serial").
        serial = secrets.randbelow(2**64 - 1) + 1
        builder = (
            SSHCertificateBuilder()
            .public_key(key.key)
            .serial(serial)
            .type(SSHCertificateType.USER)
            .key_id(key_id.encode())
            .valid_principals([principal.encode()])
            .valid_after(valid_after)
            .valid_before(valid_before)
        )
        for extension in EXTENSIONS:
            builder = builder.add_extension(extension, b"")
        certificate: SSHCertificate = builder.sign(self._private_key)
        return SshCertificate(
            line=f"{certificate.public_bytes().decode()} {key_id}",
            serial=serial,
            key_id=key_id,
            principals=(principal,),
            valid_after=datetime.fromtimestamp(valid_after, UTC),
            valid_before=datetime.fromtimestamp(valid_before, UTC),
        )
