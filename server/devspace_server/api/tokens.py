"""Personal access tokens, for automation: create (the secret is shown once), list, revoke.

A personal token can never do more than the token that created it: its scopes must be a
subset of the caller's. It always expires; a year at most.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from flask import Blueprint
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from devspace_server import audit, context
from devspace_server.api.operations import Model, operation
from devspace_server.auth import scopes, tokens
from devspace_server.errors import Conflict, NotFound
from devspace_server.models import ApiToken, TokenKind, utcnow

blueprint = Blueprint("tokens", __name__, url_prefix="/api/v1/tokens")

ScopeName = Literal["spaces", "ssh", "admin"]
MAX_PERSONAL_TOKENS = 100
# The largest id SQL stores; a larger one in a URL would fail in the driver, so it is a 404.
LARGEST_ID = 2**63 - 1


class TokenInfo(Model):
    """A token as its owner (or an admin) sees it; never its secret."""

    id: int
    kind: TokenKind
    name: str | None = Field(description="The label given to a personal token.")
    client_id: str | None = Field(description="The OAuth client it was issued to, if any.")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool

    @classmethod
    def of(cls, token: ApiToken) -> TokenInfo:
        """The description of `token`."""
        return cls(
            id=token.id,
            kind=token.kind,
            name=token.name,
            client_id=token.client_id,
            scopes=scopes.parse(token.scope),
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked=token.revoked_at is not None,
        )


class TokenList(Model):
    """Tokens, newest first."""

    items: list[TokenInfo]


class NewToken(Model):
    """What a new personal access token is called, may do, and how long it lasts."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
    scopes: Annotated[list[ScopeName], Field(min_length=1)]
    expires_in_days: Annotated[int, Field(ge=1, le=365)] = 90


class CreatedToken(TokenInfo):
    """A new personal token, with its secret: shown this once and never again."""

    token: str = Field(description="The secret. Store it now: the server keeps only a hash.")


def live_tokens(db: Session, user_id: str, kind: TokenKind | None = None) -> list[ApiToken]:
    """The user's tokens that are neither revoked nor expired, newest first."""
    query = select(ApiToken).where(
        ApiToken.user_id == user_id,
        ApiToken.revoked_at.is_(None),
        (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > utcnow()),
    )
    if kind is not None:
        query = query.where(ApiToken.kind == kind)
    return list(db.scalars(query.order_by(ApiToken.id.desc())).all())


@blueprint.get("")
@operation(summary="List your personal access tokens", tags=["tokens"], response=TokenList)
def list_tokens() -> TokenList:
    """The caller's live personal tokens."""
    mine = live_tokens(context.db(), tokens.caller().user.id, TokenKind.PERSONAL)
    return TokenList(items=[TokenInfo.of(t) for t in mine])


@blueprint.post("")
@operation(
    summary="Create a personal access token",
    description="The secret is in the answer only; the server stores its hash.",
    tags=["tokens"],
    body=NewToken,
    response=CreatedToken,
    status=201,
    errors=[409],
)
def create_token(body: NewToken) -> CreatedToken:
    """A new personal token. Raises `InsufficientScope` if it would exceed the caller's
    scopes, `Conflict` if the caller has too many."""
    who, db, now = tokens.caller(), context.db(), utcnow()
    wanted = scopes.parse(" ".join(body.scopes))
    beyond = [s for s in wanted if s not in who.scopes]
    if beyond:
        raise tokens.InsufficientScope(
            f"A new token cannot have scopes this token lacks: {', '.join(beyond)}.", beyond
        )
    if len(live_tokens(db, who.user.id, TokenKind.PERSONAL)) >= MAX_PERSONAL_TOKENS:
        raise Conflict(f"You have {MAX_PERSONAL_TOKENS} tokens: revoke some you do not use.")
    secret = tokens.new_secret(TokenKind.PERSONAL)
    token = ApiToken(
        token_hash=tokens.digest(secret),
        kind=TokenKind.PERSONAL,
        user_id=who.user.id,
        name=body.name,
        scope=scopes.join(wanted),
        expires_at=now + timedelta(days=body.expires_in_days),
        created_at=now,
    )
    db.add(token)
    db.flush()
    audit.record(
        db,
        "token.created",
        actor=who.user,
        ip=context.client_ip(),
        target=who.user.id,
        details={"token": token.id, "name": body.name, "scopes": wanted},
    )
    db.commit()
    return CreatedToken(**TokenInfo.of(token).model_dump(), token=secret)


@blueprint.delete(f"/<int(max={LARGEST_ID}):token_id>")
@operation(summary="Revoke one of your personal tokens", tags=["tokens"], status=204, errors=[404])
def revoke_token(token_id: int) -> None:
    """Revoke it at once. Raises `NotFound` unless it is the caller's own personal token."""
    who, db = tokens.caller(), context.db()
    token = db.get(ApiToken, token_id)
    if token is None or token.user_id != who.user.id or token.kind is not TokenKind.PERSONAL:
        raise NotFound(f"You have no personal token {token_id}.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    audit.record(
        db,
        "token.revoked",
        actor=who.user,
        ip=context.client_ip(),
        target=who.user.id,
        details={"token": token_id},
    )
    db.commit()
