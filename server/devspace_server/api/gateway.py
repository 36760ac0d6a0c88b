"""The SSH gateway's question: which sidecars may this certificate reach? (`/internal/gateway/`)

sshd on the gateway runs `devspace-gateway-principals` (sshd-image/gateway/principals) as its
`AuthorizedPrincipalsCommand` on every login; the script POSTs the form fields `user`,
`key_type` and `certificate` (sshd's `%u %t %k`) here with `Authorization: Bearer <shared
secret>` (`DEVSPACE_GATEWAY_SECRET`) and prints the answer, which sshd reads as an
`authorized_principals` file:

- 200 with one line, `restrict,port-forwarding,permitopen="<pod IP>:2222",… <user id>`,
  when the certificate's owner has running spaces: sshd lets the login in, and its
  `direct-tcpip` channels may go to those sidecars only;
- 200 with an empty body when the owner has none: sshd finds no principal and refuses;
- anything else (401 wrong secret, 403 a certificate or user we will not vouch for, 400 a
  malformed request, 503 no secret or CA configured) makes the script fail, and sshd refuses.

This is not part of the public API (no `/api/v1` prefix, absent from the OpenAPI document)
and answers `text/plain`, which is what sshd consumes. It runs on every gateway login, so it
costs two indexed queries and no writes. Decisions are logged at debug level and not audited:
one audit row per SSH login would bury the events that matter (certificate issuance is
audited in `api/ssh.py`, and sshd itself logs each login with the certificate's key id).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import SSHCertificate, SSHCertificateType
from flask import Blueprint, Response, request
from sqlalchemy import select

from devspace_server import context
from devspace_server.errors import BadRequest, DevspaceError, Forbidden, Unauthorized
from devspace_server.kube.spec import SIDECAR_PORT
from devspace_server.models import Space, User

blueprint = Blueprint("gateway", __name__, url_prefix="/internal/gateway")
log = logging.getLogger(__name__)

RUNNING = "running"
MAX_FIELD_CHARS = 16 * 1024  # an RSA-16384 certificate is well under this
# Our principals are user ids (UUIDs); anything else in an answer line could smuggle options.
_PRINCIPAL = re.compile(r"[A-Za-z0-9._-]{1,64}")


class GatewayNotConfigured(DevspaceError):
    """The server has no gateway secret or no SSH CA, so it cannot answer the gateway."""

    status = 503
    slug = "gateway-not-configured"
    title = "SSH gateway not configured"


class GatewayUnauthorized(Unauthorized):
    """The caller is not the gateway: no bearer token, or not the shared secret."""

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="devspace-gateway"'}


def _check_gateway_secret() -> None:
    """Raises `GatewayNotConfigured` or `GatewayUnauthorized` unless the caller is the gateway."""
    expected = context.config().gateway_secret
    if not expected:
        raise GatewayNotConfigured(
            "This server has no gateway secret: set DEVSPACE_GATEWAY_SECRET (or _FILE)."
        )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # Constant time, so that the secret cannot be guessed a byte at a time from timings.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise GatewayUnauthorized("Send the gateway's shared secret as a Bearer token.")


def _field(name: str) -> str:
    value = request.form.get(name, "")
    if not value or len(value) > MAX_FIELD_CHARS:
        raise BadRequest(f"Send the form field {name!r} (sshd's %u, %t or %k).")
    return value


def certificate_owner(key_type: str, certificate: str, now: datetime) -> str:
    """The user id a certificate was issued to, if our CA signed it and it is valid at `now`.

    Raises `Forbidden` for anything else (not a certificate, a host certificate, an untrusted
    or bad signature, outside its validity, no principal or several, a principal that is not
    one of our user ids) and `GatewayNotConfigured` when the server has no CA.
    """
    ca = context.config().ssh_ca
    if ca is None:
        raise GatewayNotConfigured("This server has no SSH CA, so it trusts no certificate.")
    try:
        cert = serialization.load_ssh_public_identity(f"{key_type} {certificate}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise Forbidden("Not an OpenSSH certificate.") from None
    if not isinstance(cert, SSHCertificate) or cert.type != SSHCertificateType.USER:
        raise Forbidden("Not an OpenSSH user certificate.")
    trusted = {
        k.key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        for k in (ca.public_key, *ca.previous)
    }
    signer = cert.signature_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    if signer not in trusted:
        raise Forbidden("The certificate was not signed by a CA this server trusts.")
    try:
        cert.verify_cert_signature()
    except (InvalidSignature, UnsupportedAlgorithm):
        raise Forbidden("The certificate's signature does not verify.") from None
    if not cert.valid_after <= now.timestamp() < cert.valid_before:
        raise Forbidden("The certificate is expired or not yet valid.")
    # Our CA puts exactly the user's id in every certificate; an empty list would mean
    # "any principal" to OpenSSH, and several are not ours.
    if len(cert.valid_principals) != 1:
        raise Forbidden("The certificate must name exactly one principal.")
    principal = cert.valid_principals[0].decode("ascii", errors="replace")
    if not _PRINCIPAL.fullmatch(principal):
        raise Forbidden("The certificate's principal is not a user id.")
    return principal


def permitopen(pod_ip: str) -> str | None:
    """`permitopen="<ip>:2222"` for a sidecar, or None if `pod_ip` is not an IP address."""
    try:
        address = ipaddress.ip_address(pod_ip)
    except ValueError:
        return None
    host = f"[{address}]" if address.version == 6 else str(address)
    return f'permitopen="{host}:{SIDECAR_PORT}"'


def principals_line(user_id: str, pod_ips: list[str]) -> str:
    """The `authorized_principals` line letting `user_id` forward to `pod_ips`' sidecars only.

    Returns "" when there is nothing to reach (sshd then refuses the login).
    """
    options = [o for o in dict.fromkeys(map(permitopen, sorted(pod_ips))) if o]
    if not options:
        return ""
    return f"restrict,port-forwarding,{','.join(options)} {user_id}\n"


@blueprint.post("/principals")
def principals() -> Response:
    """Answer the gateway's `AuthorizedPrincipalsCommand` (see the module docstring).

    Returns 200 `text/plain` with one line or none. Raises `GatewayUnauthorized`,
    `GatewayNotConfigured`, `BadRequest` and `Forbidden`, each of which sshd treats as "no".
    """
    try:
        _check_gateway_secret()
    except DevspaceError as error:
        log.debug("gateway: refused the caller itself: %s", error)
        raise
    login = _field("user")
    try:
        user_id = certificate_owner(_field("key_type"), _field("certificate"), datetime.now(UTC))
    except DevspaceError as error:
        log.debug("gateway: refused a certificate (login %s): %s", login, error)
        raise
    db = context.db()
    user = db.get(User, user_id)
    if user is None or user.disabled:
        log.debug("gateway: refused %s (login %s): no such user or disabled", user_id, login)
        raise Forbidden("This certificate's owner does not exist or is disabled.")
    found = db.scalars(
        select(Space.pod_ip).where(
            Space.owner_id == user_id,
            Space.deleted_at.is_(None),
            Space.stopped.is_(False),
            Space.phase == RUNNING,
            Space.pod_ip.is_not(None),
        )
    ).all()
    pod_ips = [ip for ip in found if ip]
    line = principals_line(user_id, pod_ips)
    log.debug(
        "gateway: %s (login %s) may reach %s", user_id, login, ", ".join(pod_ips) or "nothing"
    )
    return Response(line, status=200, mimetype="text/plain")
