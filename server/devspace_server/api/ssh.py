"""SSH certificates for the caller (`/api/v1/ssh/certificates`) and the CA's public keys.

A certificate is issued to the user the token belongs to, for that user's immutable id as
the only principal; which spaces it opens is decided by each space's principals, not here.
Every issuance is audited with the key's fingerprint and the certificate's serial and key
id, which sshd logs at each login: together they trace a session back to a request.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from flask import Blueprint
from pydantic import Field

from devspace_server import audit, context
from devspace_server.api.operations import Model, operation
from devspace_server.auth import scopes, tokens
from devspace_server.ca import ACCEPTED, CertificateAuthority, UnacceptableKey, parse_public_key
from devspace_server.errors import DevspaceError, InvalidField, ValidationFailed

blueprint = Blueprint("ssh", __name__, url_prefix="/api/v1/ssh")
log = logging.getLogger(__name__)
MAX_PUBLIC_KEY_CHARS = 16 * 1024  # an RSA-16384 line is under 3,000 characters


class CertificateAuthorityMissing(DevspaceError):
    """This server was started without an SSH CA key, so it cannot sign or name one."""

    status = 503
    slug = "ssh-ca-not-configured"
    title = "SSH certificate authority not configured"


class CertificateRequest(Model):
    """The public key to certify."""

    public_key: str = Field(
        max_length=MAX_PUBLIC_KEY_CHARS,
        description=f"One OpenSSH public key line, as in ~/.ssh/id_ed25519.pub: {ACCEPTED}.",
    )


class Certificate(Model):
    """A user certificate for the key that was sent."""

    certificate: str = Field(description="One OpenSSH line, to save as `<key>-cert.pub`.")
    serial: str = Field(
        description="The certificate's serial, in decimal (a 64-bit number: as a string, "
        "so that no JSON parser rounds it).",
        pattern=r"^[0-9]+$",
    )
    key_id: str = Field(description="Names the user and this request; sshd logs it.")
    principals: list[str] = Field(description="The caller's user id, and nothing else.")
    valid_after: datetime = Field(description="A minute before issuance, for clock skew.")
    valid_before: datetime
    public_key_fingerprint: str = Field(description="`SHA256:…` of the certified key.")


class CaKeys(Model):
    """The SSH CA's public keys. sshd must trust every one of `trusted_public_keys`."""

    public_key: str = Field(description="The key that signs new certificates.")
    trusted_public_keys: list[str] = Field(
        description="The signing key first, then earlier ones still trusted while "
        "certificates they signed may be alive (key rotation)."
    )


class GatewayNotConfigured(DevspaceError):
    """This server was not told where its SSH gateway is, so the CLI cannot be either."""

    status = 503
    slug = "ssh-gateway-not-configured"
    title = "SSH gateway not configured"


class Gateway(Model):
    """Where to reach the SSH gateway, and the host keys to pin for it."""

    host: str
    port: int = Field(ge=1, le=65535)
    user: str = Field(description="The login name the gateway accepts.")
    host_keys: list[str] = Field(
        description="The gateway's public host keys, one OpenSSH line each: pin them, "
        "never trust on first use."
    )


def authority() -> CertificateAuthority:
    """The app's SSH CA. Raises `CertificateAuthorityMissing` if it has none."""
    found = context.config().ssh_ca
    if found is None:
        raise CertificateAuthorityMissing(
            "This server has no SSH certificate authority: its operator must set "
            "DEVSPACE_SSH_CA_KEY_FILE (devspace-server serve makes one by itself)."
        )
    return found


@blueprint.get("/ca")
@operation(
    summary="The SSH certificate authority's public keys",
    tags=["ssh"],
    public=True,
    response=CaKeys,
    errors=[503],
)
def show_ca() -> CaKeys:
    """The signing key and every trusted key. Raises `CertificateAuthorityMissing`."""
    ca = authority()
    return CaKeys(
        public_key=ca.trusted_public_keys[0], trusted_public_keys=list(ca.trusted_public_keys)
    )


@blueprint.get("/gateway")
@operation(
    summary="Where the SSH gateway is, and its host keys",
    tags=["ssh"],
    public=True,
    response=Gateway,
    errors=[503],
)
def show_gateway() -> Gateway:
    """The configured gateway endpoint. Raises `GatewayNotConfigured`."""
    found = context.config().gateway
    if found is None:
        raise GatewayNotConfigured(
            "This server does not know where its SSH gateway is: its operator must set "
            "DEVSPACE_GATEWAY_ADDRESS and DEVSPACE_GATEWAY_HOST_KEYS_FILE."
        )
    return Gateway(
        host=found.host, port=found.port, user=found.user, host_keys=list(found.host_keys)
    )


@blueprint.post("/certificates")
@operation(
    summary="Certify a public key for SSH access to your spaces",
    description=(
        "Signs the key as an OpenSSH user certificate for the caller, valid for a few hours, "
        "with PTY and port forwarding only. Weak or unsupported keys are refused (422)."
    ),
    tags=["ssh"],
    scopes=[scopes.SSH],
    body=CertificateRequest,
    response=Certificate,
    errors=[503],
)
def issue_certificate(body: CertificateRequest) -> Certificate:
    """A certificate for the caller's key; the issuance is audited.

    Raises `ValidationFailed` naming `public_key` for a key that cannot be certified, and
    `CertificateAuthorityMissing`.
    """
    ca = authority()
    try:
        key = parse_public_key(body.public_key)
    except UnacceptableKey as exc:
        raise ValidationFailed([InvalidField("public_key", "#/public_key", f"{exc}.")]) from None
    who, db = tokens.caller(), context.db()
    request_id = uuid.uuid4()
    issued = ca.sign(
        key,
        principal=who.user.id,
        key_id=f"devspace:user={who.user.id}:req={request_id}",
        lifetime=timedelta(seconds=context.config().ssh_cert_lifetime_seconds),
    )
    audit.record(
        db,
        "ssh.certificate_issued",
        actor=who.user,
        ip=context.client_ip(),
        target=who.user.id,
        details={
            "serial": str(issued.serial),
            "key_id": issued.key_id,
            "fingerprint": key.fingerprint,
            "key_type": key.type_name,
            "principals": list(issued.principals),
            "valid_before": issued.valid_before.isoformat(),
        },
    )
    # Committed before the certificate is handed out: no certificate without its record.
    db.commit()
    log.info(
        "issued SSH certificate %s serial %d for %s", issued.key_id, issued.serial, key.fingerprint
    )
    return Certificate(
        certificate=issued.line,
        serial=str(issued.serial),
        key_id=issued.key_id,
        principals=list(issued.principals),
        valid_after=issued.valid_after,
        valid_before=issued.valid_before,
        public_key_fingerprint=key.fingerprint,
    )
