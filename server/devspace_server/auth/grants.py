"""Where Authlib's grants and endpoints keep their state: the database, hashed.

Each class here answers Authlib's storage questions for one part of the protocol:
authorization codes (single-use, kept after use so a replay can be recognised and what it
was exchanged for revoked), refresh tokens (rotated on every use, a reuse revokes the
family), device authorizations (polling state in the row, so every worker agrees) and
revocation. A single-use credential is claimed with a conditional UPDATE, so of two
racing requests exactly one wins. `oauth.py` assembles them into the server.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import (
    AuthorizationPendingError,
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    ExpiredTokenError,
    SlowDownError,
)
from sqlalchemy import delete, select, update

from devspace_server import audit, context
from devspace_server.auth import scopes
from devspace_server.auth.tokens import digest, find, is_live, revoke_family
from devspace_server.models import (
    ApiToken,
    AuthorizationCode,
    DeviceAuthorization,
    DeviceStatus,
    TokenKind,
    User,
    utcnow,
)

if TYPE_CHECKING:
    from devspace_server.auth.oauth import CliClient

CODE_LIFETIME = timedelta(seconds=60)
DEVICE_CODE_LIFETIME_SECONDS = 600
DEVICE_POLL_INTERVAL = 5


class Code:
    """An `AuthorizationCode` row as Authlib sees it."""

    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope


class Token:
    """An `ApiToken` row as Authlib's refresh and revocation code sees it."""

    def __init__(self, row: ApiToken) -> None:
        self.row = row

    def get_scope(self) -> str:
        return self.row.scope

    def check_client(self, client: CliClient) -> bool:
        return self.row.client_id == client.get_client_id()

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None

    def is_expired(self) -> bool:
        return not is_live(self.row, utcnow())


class Device:
    """A `DeviceAuthorization` row as Authlib's device code grant sees it."""

    def __init__(self, row: DeviceAuthorization) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_scope(self) -> str:
        return self.row.scope

    def get_user_code(self) -> str:
        return self.row.user_code


def _replayed(family: str | None, what: str, user_id: str | None) -> None:
    """A single-use credential came back: revoke what was issued for it, and say so."""
    db, now = context.db(), utcnow()
    revoked = revoke_family(db, family, now) if family else 0
    audit.record(
        db,
        f"oauth.{what}_replayed",
        actor=None,
        ip=context.client_ip(),
        target=user_id,
        details={"family": family, "revoked": revoked},
    )
    db.commit()


def _user(user_id: str | None) -> User | None:
    user = context.db().get(User, user_id) if user_id else None
    return user if user is not None and not user.disabled else None


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE, required, and only with `S256`: `plain` would hand the verifier to whoever
    sees the authorization request."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - Authlib's interface
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """The authorization code grant: codes live 60 s, are single-use and kept after use."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012 - Authlib's interface

    def save_authorization_code(self, code: str, request: Any) -> None:
        db, now, user = context.db(), utcnow(), request.user
        db.execute(delete(AuthorizationCode).where(AuthorizationCode.expires_at < now))
        granted = scopes.grantable(user, scopes.parse(request.scope))
        db.add(
            AuthorizationCode(
                code_hash=digest(code),
                client_id=request.client.get_client_id(),
                user_id=user.id,
                redirect_uri=request.payload.redirect_uri,
                scope=scopes.join(granted),
                code_challenge=request.payload.data["code_challenge"],
                code_challenge_method="S256",
                expires_at=now + CODE_LIFETIME,
            )
        )

    def query_authorization_code(self, code: str, client: CliClient) -> Code | None:
        row = context.db().scalar(
            select(AuthorizationCode).where(AuthorizationCode.code_hash == digest(code))
        )
        if row is None or row.client_id != client.get_client_id():
            return None
        if row.used_at is not None:
            # RFC 6749 section 4.1.2: a code used twice revokes what it was exchanged for.
            _replayed(row.family, "code", row.user_id)
            return None
        return Code(row) if row.expires_at > utcnow() else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        pass  # kept, marked used, to recognise a replay; claimed in authenticate_user

    def authenticate_user(self, authorization_code: Code) -> User | None:
        # Claimed only now, after the PKCE check, so a wrong verifier does not burn the
        # code; the conditional update lets exactly one of two racing requests win.
        row = authorization_code.row
        claimed = context.db().execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == row.id, AuthorizationCode.used_at.is_(None))
            .values(used_at=utcnow())
        )
        if getattr(claimed, "rowcount", 0) != 1:
            raise InvalidGrantError("The code was already used.")
        return _user(row.user_id)


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    """The refresh grant: each refresh token works once; a second use revokes its family."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012 - Authlib's interface
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        row = find(context.db(), refresh_token)
        if row is None or row.kind is not TokenKind.REFRESH:
            return None
        if row.rotated_at is not None:
            _replayed(row.family, "refresh_token", row.user_id)
            return None
        return Token(row) if is_live(row, utcnow()) else None

    def authenticate_user(self, refresh_token: Token) -> User | None:
        row, db, now = refresh_token.row, context.db(), utcnow()
        claimed = db.execute(
            update(ApiToken)
            .where(ApiToken.id == row.id, ApiToken.rotated_at.is_(None))
            .values(rotated_at=now, revoked_at=now)
        )
        if getattr(claimed, "rowcount", 0) != 1:  # lost a race with another use of it
            _replayed(row.family, "refresh_token", row.user_id)
            raise InvalidGrantError("The refresh token was already used.")
        return _user(row.user_id)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        pass  # done when it was claimed in authenticate_user


class DeviceGrant(DeviceCodeGrant):  # type: ignore[misc]
    """Polling with a device code: pending, slow_down, denied, expired, or tokens once."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012 - Authlib's interface

    def query_device_credential(self, device_code: str) -> Device | None:
        row = context.db().scalar(
            select(DeviceAuthorization).where(
                DeviceAuthorization.device_code_hash == digest(device_code)
            )
        )
        return Device(row) if row else None

    def validate_device_credential(self, credential: Device) -> User:
        row, db, now = credential.row, context.db(), utcnow()
        if row.status is DeviceStatus.REDEEMED:
            _replayed(row.family, "device_code", row.user_id)
            raise InvalidGrantError("The device code was already used.")
        if row.expires_at <= now:
            raise ExpiredTokenError()
        last, row.last_polled_at = row.last_polled_at, now
        if row.status is DeviceStatus.DENIED:
            raise AccessDeniedError()
        if row.status is DeviceStatus.PENDING:
            # A second of slack: a client that waits exactly `interval` may arrive early
            # by network jitter, and should not be punished for it.
            if last is not None and (now - last).total_seconds() + 1 < row.interval:
                row.interval += 5  # RFC 8628 section 3.5, for this and every later poll
                raise SlowDownError()
            raise AuthorizationPendingError()
        claimed = db.execute(
            update(DeviceAuthorization)
            .where(
                DeviceAuthorization.id == row.id,
                DeviceAuthorization.status == DeviceStatus.APPROVED,
            )
            .values(status=DeviceStatus.REDEEMED)
        )
        user = _user(row.user_id)
        if getattr(claimed, "rowcount", 0) != 1 or user is None:
            raise InvalidGrantError("The device code cannot be used.")
        return user


class DeviceEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    """Issues device and user codes (RFC 8628 section 3.2); stores the device code hashed."""

    CLIENT_AUTH_METHODS = ["none"]  # noqa: RUF012 - Authlib's interface
    EXPIRES_IN = DEVICE_CODE_LIFETIME_SECONDS
    INTERVAL = DEVICE_POLL_INTERVAL

    def get_verification_uri(self) -> str:
        return f"{context.config().public_url}/device"

    def save_device_credential(self, client_id: str, scope: str | None, data: Any) -> None:
        db, now = context.db(), utcnow()
        # A day after expiry a device row has no use left, not even to spot a replay.
        db.execute(
            delete(DeviceAuthorization).where(
                DeviceAuthorization.expires_at < now - timedelta(days=1)
            )
        )
        db.add(
            DeviceAuthorization(
                device_code_hash=digest(data["device_code"]),
                user_code=data["user_code"],
                client_id=client_id,
                scope=scopes.join(scopes.parse(scope)),
                status=DeviceStatus.PENDING,
                expires_at=now + timedelta(seconds=self.EXPIRES_IN),
                interval=self.INTERVAL,
            )
        )


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009 revocation of the CLI's access and refresh tokens."""

    CLIENT_AUTH_METHODS = ["none"]  # noqa: RUF012 - Authlib's interface

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        row = find(context.db(), token_string)
        # Personal tokens are revoked through the API, by their owner, not by a client.
        if row is None or row.kind is TokenKind.PERSONAL:
            return None
        return Token(row)

    def revoke_token(self, token: Token, request: Any) -> None:
        row, now = token.row, utcnow()
        if row.kind is TokenKind.REFRESH and row.family:
            # RFC 7009 section 2.1: revoking the refresh token ends the whole sign-in.
            revoke_family(context.db(), row.family, now)
        elif row.revoked_at is None:
            row.revoked_at = now
