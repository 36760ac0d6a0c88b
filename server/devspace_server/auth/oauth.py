"""The OAuth 2.0 authorization server for the CLI, built on Authlib.

One built-in public client, `devspace-cli`, may use:

- the authorization code grant with PKCE, `S256` only, redirecting to a loopback address
  (`http://127.0.0.1:<port>/callback` or `http://[::1]:<port>/callback`, nothing else);
- the device authorization grant (RFC 8628), with its polling state in the database;
- the refresh token grant: every refresh token is single-use and rotates; presenting a
  rotated one again revokes its whole family (RFC 9700 section 4.14.2).

Codes and tokens are stored only as SHA-256 hashes. Authlib drives the protocol;
`grants.py` says where its state lives. Every endpoint commits what it did even when it
answers with an error, because some errors change state (a replayed code revokes tokens,
a fast poll lengthens the interval). The browser pages are in `consent.py`.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE
from flask import Blueprint, Response, jsonify
from sqlalchemy import delete

from devspace_server import context
from devspace_server.auth import grants, scopes
from devspace_server.auth.tokens import digest, new_secret
from devspace_server.models import ApiToken, TokenKind, utcnow

CLIENT_ID = "devspace-cli"
CLIENT_NAME = "the devspace command-line tool"
REDIRECT_PATH = "/callback"
GRANT_TYPES = ("authorization_code", "refresh_token", DEVICE_CODE_GRANT_TYPE)
# RFC 8252 section 7.3: any port on a loopback literal, so the CLI can listen where it can.
# "localhost" is left out: it can resolve elsewhere, and 127.0.0.1 always works.
_LOOPBACK = re.compile(r"http://(?:127\.0\.0\.1|\[::1\]):(?P<port>[1-9][0-9]{0,4})/callback")

blueprint = Blueprint("oauth", __name__)


def loopback_redirect_ok(uri: str) -> bool:
    """True if `uri` is a redirect the CLI may use: http, a loopback literal, any port,
    exactly `/callback`, and no user, query or fragment."""
    found = _LOOPBACK.fullmatch(uri)
    return found is not None and int(found.group("port")) <= 65535


class CliClient(ClientMixin):  # type: ignore[misc]
    """The built-in public client: the `devspace` CLI. It has no secret to keep."""

    client_id = CLIENT_ID
    client_name = CLIENT_NAME

    def get_client_id(self) -> str:
        return CLIENT_ID

    def get_default_redirect_uri(self) -> None:
        return None  # the CLI must always say which port it listens on

    def get_allowed_scope(self, scope: str | None) -> str:
        return scopes.join(n for n in scopes.parse(scope) if n in scopes.SUPPORTED)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return loopback_redirect_ok(redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


CLI = CliClient()


def _query_client(client_id: str) -> CliClient | None:
    return CLI if client_id == CLIENT_ID else None


def _access_token(**_: Any) -> str:
    return new_secret(TokenKind.ACCESS)


def _refresh_token(**_: Any) -> str:
    return new_secret(TokenKind.REFRESH)


def _expires_in(client: CliClient, grant_type: str) -> int:
    return context.config().access_token_lifetime_seconds


def _save_token(token: dict[str, Any], request: Any) -> None:
    db, now, cfg, user = context.db(), utcnow(), context.config(), request.user
    # Scopes are checked against the user again: a refresh after losing the admin role
    # must not carry `admin` on.
    granted = scopes.join(scopes.grantable(user, scopes.parse(token.get("scope", ""))))
    if not granted:
        raise InvalidScopeError("No scope this account may hold is left to grant.")
    token["scope"] = granted
    # Expired tokens have nothing left to say; without this, every refresh adds two rows.
    db.execute(delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.expires_at < now))
    if request.refresh_token is not None:
        family = request.refresh_token.row.family
    else:
        family = str(uuid.uuid4())
        source = request.authorization_code or request.credential
        source.row.family = family
    lifetimes = {
        "access_token": (TokenKind.ACCESS, cfg.access_token_lifetime_seconds),
        "refresh_token": (TokenKind.REFRESH, cfg.refresh_token_lifetime_seconds),
    }
    for field, (kind, lifetime) in lifetimes.items():
        if field in token:
            db.add(
                ApiToken(
                    token_hash=digest(token[field]),
                    kind=kind,
                    user_id=user.id,
                    client_id=request.client.get_client_id(),
                    family=family,
                    scope=granted,
                    expires_at=now + timedelta(seconds=lifetime),
                )
            )


def _make_server() -> AuthorizationServer:
    server = AuthorizationServer(query_client=_query_client, save_token=_save_token)
    server.scopes_supported = list(scopes.SUPPORTED)
    server.register_token_generator(
        "default", BearerTokenGenerator(_access_token, _refresh_token, _expires_in)
    )
    server.register_grant(grants.CodeGrant, [grants.S256Only(required=True)])
    server.register_grant(grants.RefreshGrant)
    server.register_grant(grants.DeviceGrant)
    server.register_endpoint(grants.DeviceEndpoint)
    server.register_endpoint(grants.Revocation)
    return server


# Holds no per-request or per-user state (Authlib makes a grant object per request), and
# reads everything else from the current app, so one serves every app in the process.
server = _make_server()


def _committed(response: Response) -> Response:
    context.db().commit()
    return response


@blueprint.post("/oauth/token")
def token() -> Response:
    """The token endpoint: codes, device codes and refresh tokens in, tokens out."""
    return _committed(server.create_token_response())


@blueprint.post("/oauth/device_authorization")
def device_authorization() -> Response:
    """The device authorization endpoint (RFC 8628 section 3.1)."""
    return _committed(server.create_endpoint_response(grants.DeviceEndpoint.ENDPOINT_NAME))


@blueprint.post("/oauth/revoke")
def revoke() -> Response:
    """The revocation endpoint (RFC 7009); answers 200 for unknown tokens too."""
    return _committed(server.create_endpoint_response(grants.Revocation.ENDPOINT_NAME))


def metadata() -> dict[str, Any]:
    """The authorization server metadata (RFC 8414) for the current app."""
    base = context.config().public_url
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "device_authorization_endpoint": f"{base}/oauth/device_authorization",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "scopes_supported": list(scopes.SUPPORTED),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
    }


@blueprint.get("/.well-known/oauth-authorization-server")
def server_metadata() -> Response:
    """Where the endpoints are and what they support, for the CLI to discover."""
    response = jsonify(metadata())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
