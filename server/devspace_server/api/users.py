"""Who am I (`/api/v1/me`), and the admin users API under `/api/v1/admin/users`.

Every admin operation needs a token with the `admin` scope held by an admin, and every
change is audited with who did it, to whom, and from which address. Admins cannot disable
or demote themselves: the last admin would lock everyone out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from flask import Blueprint
from pydantic import Field
from sqlalchemy import delete, func, select

from devspace_server import audit, context
from devspace_server.api.operations import Model, operation
from devspace_server.api.tokens import TokenInfo, TokenList, live_tokens
from devspace_server.auth import scopes, tokens
from devspace_server.errors import Conflict, NotFound
from devspace_server.models import ApiToken, Role, User, WebSession, utcnow

blueprint = Blueprint("users", __name__, url_prefix="/api/v1")
ADMIN = [scopes.ADMIN]
# The largest integer SQL stores (SQLite's INTEGER, PostgreSQL's bigint): a larger one in a
# request would fail in the driver, so it is refused before, as a 422 or a 404.
LARGEST = 2**63 - 1


class UserInfo(Model):
    """A user account."""

    id: str = Field(description="Immutable and never reused; the user's SSH principal.")
    username: str
    email: str | None
    email_verified: bool
    role: Role
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserInfo:
        """The description of `user`."""
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            email_verified=user.email_verified,
            role=user.role,
            disabled=user.disabled,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class Me(UserInfo):
    """The caller, and what the token they used may do."""

    scopes: list[str] = Field(description="The scopes this token may use now.")


class Paging(Model):
    """Which page of a list to show."""

    limit: Annotated[int, Field(ge=1, le=200)] = 50
    offset: Annotated[int, Field(ge=0, le=LARGEST)] = 0


class UserPage(Model):
    """One page of users, by username."""

    items: list[UserInfo]
    total: int
    limit: int
    offset: int


class UserChange(Model):
    """What to change about a user; fields left out stay as they are."""

    disabled: bool | None = None
    role: Role | None = None


@blueprint.get("/me")
@operation(summary="The signed-in user", tags=["users"], response=Me)
def me() -> Me:
    """The caller's account and the scopes of the token they called with."""
    who = tokens.caller()
    return Me(**UserInfo.of(who.user).model_dump(), scopes=scopes.parse(" ".join(who.scopes)))


@blueprint.get("/admin/users")
@operation(summary="List users", tags=["admin"], scopes=ADMIN, query=Paging, response=UserPage)
def list_users(query: Paging) -> UserPage:
    """One page of all users, ordered by username."""
    db = context.db()
    total = db.scalar(select(func.count()).select_from(User)) or 0
    users = db.scalars(
        select(User).order_by(User.username).limit(query.limit).offset(query.offset)
    ).all()
    return UserPage(
        items=[UserInfo.of(u) for u in users], total=total, limit=query.limit, offset=query.offset
    )


def _user(user_id: str) -> User:
    # PostgreSQL refuses text with NUL in it outright; no id has one.
    user = None if "\x00" in user_id else context.db().get(User, user_id)
    if user is None:
        raise NotFound(f"There is no user with id {user_id!r}.")
    return user


@blueprint.get("/admin/users/<user_id>")
@operation(summary="Show a user", tags=["admin"], scopes=ADMIN, response=UserInfo, errors=[404])
def show_user(user_id: str) -> UserInfo:
    """One user. Raises `NotFound`."""
    return UserInfo.of(_user(user_id))


@blueprint.patch("/admin/users/<user_id>")
@operation(
    summary="Disable, enable or change the role of a user",
    description="Disabling ends the user's sign-ins and revokes their tokens at once.",
    tags=["admin"],
    scopes=ADMIN,
    body=UserChange,
    response=UserInfo,
    errors=[404, 409],
)
def change_user(user_id: str, body: UserChange) -> UserInfo:
    """Apply `body` to the user. Raises `NotFound`, or `Conflict` for a change to oneself."""
    who, db, now = tokens.caller(), context.db(), utcnow()
    user = _user(user_id)
    if user.id == who.user.id and (body.disabled or body.role is Role.USER):
        raise Conflict("You cannot disable or demote yourself; ask another admin.")
    changes: list[tuple[str, dict[str, object]]] = []
    if body.disabled is not None and body.disabled != user.disabled:
        user.disabled = body.disabled
        if body.disabled:
            db.execute(delete(WebSession).where(WebSession.user_id == user.id))
            revoked = tokens.revoke_user_tokens(db, user.id, now)
            changes.append(("user.disabled", {"tokens_revoked": revoked}))
        else:
            changes.append(("user.enabled", {}))
    if body.role is not None and body.role is not user.role:
        changes.append(("user.role_changed", {"from": user.role.value, "to": body.role.value}))
        user.role = body.role
    for action, details in changes:
        audit.record(
            db, action, actor=who.user, ip=context.client_ip(), target=user.id, details=details
        )
    db.commit()
    return UserInfo.of(user)


@blueprint.get("/admin/users/<user_id>/tokens")
@operation(
    summary="List a user's live tokens",
    tags=["admin"],
    scopes=ADMIN,
    response=TokenList,
    errors=[404],
)
def list_user_tokens(user_id: str) -> TokenList:
    """The user's tokens that still work: OAuth access and refresh tokens, personal tokens."""
    user = _user(user_id)
    return TokenList(items=[TokenInfo.of(t) for t in live_tokens(context.db(), user.id)])


@blueprint.delete(f"/admin/users/<user_id>/tokens/<int(max={LARGEST}):token_id>")
@operation(
    summary="Revoke one of a user's tokens",
    description="Revoking an OAuth token ends the whole sign-in it belongs to.",
    tags=["admin"],
    scopes=ADMIN,
    status=204,
    errors=[404],
)
def revoke_user_token(user_id: str, token_id: int) -> None:
    """Revoke the token (and its OAuth family). Raises `NotFound`."""
    who, db, now = tokens.caller(), context.db(), utcnow()
    token = db.get(ApiToken, token_id)
    if token is None or token.user_id != user_id:
        raise NotFound(f"The user {user_id!r} has no token {token_id}.")
    revoked = tokens.revoke_family(db, token.family, now) if token.family else 0
    if token.revoked_at is None:
        token.revoked_at = now
        revoked = max(revoked, 1)
    audit.record(
        db,
        "token.revoked",
        actor=who.user,
        ip=context.client_ip(),
        target=user_id,
        details={"token": token_id, "revoked": revoked},
    )
    db.commit()


@blueprint.delete("/admin/users/<user_id>/tokens")
@operation(
    summary="Revoke all of a user's tokens", tags=["admin"], scopes=ADMIN, status=204, errors=[404]
)
def revoke_all_user_tokens(user_id: str) -> None:
    """Revoke every token of the user. Raises `NotFound`."""
    who, db = tokens.caller(), context.db()
    user = _user(user_id)
    revoked = tokens.revoke_user_tokens(db, user.id, utcnow())
    audit.record(
        db,
        "token.revoked_all",
        actor=who.user,
        ip=context.client_ip(),
        target=user.id,
        details={"revoked": revoked},
    )
    db.commit()
