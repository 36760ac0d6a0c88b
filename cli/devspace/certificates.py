"""The SSH key and short-lived certificate the CLI uses for one server.

Each server gets its own Ed25519 key (made on first use, never leaves the laptop, 0600 in the
config directory) and the certificate the server signed for it. A certificate lives a few
hours; `ensure_identity` asks for a new one when the one on disk is missing, is not for this
key, or expires within `RENEW_BEFORE` — so a command, or a reconnect, always starts with one
that will outlast the handshake. An SSH session already open stays open after its certificate
expires (sshd checks it at login only), so renewing at each connect is enough.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from devspace.config import config_dir, private_dir, state_dir, write_atomically
from devspace.credentials import server_slug
from devspace.errors import AuthError, ServerError
from devspace.ssh import Identity

if TYPE_CHECKING:
    from devspace.api import Api

RENEW_BEFORE = 15 * 60
"""Seconds of validity left below which a certificate is replaced before use."""


def key_directory(server: str) -> Path:
    """Where `server`'s key and certificate live."""
    return config_dir() / "ssh" / server_slug(server)


GATEWAY_PINS = "gateway.known_hosts"
"""The file, in a server's key directory, that pins its gateway for `devspace proxy`'s
`ssh -W`."""


def forget(server: str) -> None:
    """Delete `server`'s key, certificate and gateway pin (on logout); no error when there
    are none."""
    directory = key_directory(server)
    for name in ("id_ed25519", "id_ed25519.pub", "id_ed25519-cert.pub", GATEWAY_PINS):
        (directory / name).unlink(missing_ok=True)


def ensure_identity(api: Api, now: float | None = None) -> Identity:
    """The key and a certificate valid for at least `RENEW_BEFORE` more seconds.

    Raises `AuthError` (not logged in, no `ssh` scope, or the server refused the key) and
    `ServerError` (no CA on the server, or an answer that is not a certificate for our key).
    """
    from filelock import FileLock  # noqa: PLC0415 - kept off the start-up path

    directory = private_dir(key_directory(api.server))
    identity = Identity(directory / "id_ed25519", directory / "id_ed25519-cert.pub")
    locks = private_dir(state_dir() / "locks")
    # Two commands starting together must not each make a key: one would pair the other's
    # certificate with the wrong key.
    with FileLock(str(locks / f"ssh-{server_slug(api.server)}.lock"), timeout=60):
        public_line = _key(identity.private_key)
        left = _seconds_left(identity.certificate, public_line, now or time.time())
        if left is None or left < RENEW_BEFORE:
            issued = api.call("POST", "/ssh/certificates", json={"public_key": public_line})
            certificate = str(issued.get("certificate", "")) if isinstance(issued, dict) else ""
            if _seconds_left_of(certificate, public_line, now or time.time()) is None:
                raise ServerError(f"{api.server} answered without a certificate for our key")
            write_atomically(identity.certificate, f"{certificate}\n".encode())
    return identity


def _key(path: Path) -> str:
    """The public line of the key at `path`, made first if there is none."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        write_atomically(path, private)
    except (ValueError, TypeError) as error:
        raise AuthError(
            f"{path} is not a usable SSH key ({error}): delete it and run the command again"
        ) from error
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise AuthError(f"{path} is not an Ed25519 key: delete it and run the command again")
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    public = f"{line.decode()} devspace"
    write_atomically(path.with_name(path.name + ".pub"), f"{public}\n".encode())
    return public


def _seconds_left(certificate: Path, public_line: str, now: float) -> float | None:
    try:
        text = certificate.read_text(encoding="utf-8")
    except OSError:
        return None
    return _seconds_left_of(text.strip(), public_line, now)


def _seconds_left_of(text: str, public_line: str, now: float) -> float | None:
    """How long the certificate `text` stays valid, or None if it is unusable for our key."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        parsed = serialization.load_ssh_public_identity(text.encode())
    except (ValueError, TypeError):
        return None
    if not isinstance(parsed, serialization.SSHCertificate):
        return None
    ours = serialization.load_ssh_public_key(public_line.encode())
    certified = parsed.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    mine = ours.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    if certified != mine or parsed.valid_after > now:
        return None
    return parsed.valid_before - now
