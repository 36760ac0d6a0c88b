"""Quotas and usage: the caller's own (`/api/v1/quota`) and the admin endpoints.

A quota change stamps `desired_at` on every live space it affects, so the reconciler
updates their ResourceQuotas in place (nothing is recreated). Lowering a quota below what a
space already uses is allowed: running pods keep running, and what no longer fits is
refused by the cluster when it starts again, which the space's status then explains.
Every change is audited with the values before and after.
"""

from __future__ import annotations

from collections import defaultdict

from flask import Blueprint
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from devspace_server import audit, context, quotas
from devspace_server.api.operations import operation
from devspace_server.api.space_models import (
    QuotaDefaultsInfo,
    QuotaFields,
    SpaceUsage,
    Usage,
    UsageReport,
    UserQuota,
    UserUsage,
)
from devspace_server.auth import scopes, tokens
from devspace_server.errors import NotFound
from devspace_server.models import Quota, QuotaDefaults, Space, User, utcnow

blueprint = Blueprint("quotas", __name__, url_prefix="/api/v1")
ADMIN = [scopes.ADMIN]


def _fields(values: quotas.QuotaValues) -> QuotaFields:
    return QuotaFields.model_validate(values.as_dict())


def _values(fields: QuotaFields) -> quotas.QuotaValues:
    return quotas.QuotaValues(**fields.model_dump())


def _live_spaces(db: Session, user_id: str | None = None) -> list[Space]:
    statement = select(Space).where(Space.deleted_at.is_(None))
    if user_id is not None:
        statement = statement.where(Space.owner_id == user_id)
    return list(db.scalars(statement.order_by(Space.owner_id, Space.name)))


def _usage(spaces: list[Space]) -> Usage:
    return Usage(spaces=len(spaces), used=quotas.total_usage(s.quota_used for s in spaces))


def user_quota(db: Session, user: User) -> UserQuota:
    """The quota of `user`: override, effective values and usage."""
    configured = context.config().cluster.quota_defaults
    return UserQuota(
        user_id=user.id,
        username=user.username,
        override=_fields(quotas.QuotaValues.of(db.get(Quota, user.id))),
        effective=_fields(quotas.effective(db, user.id, configured)),
        usage=_usage(_live_spaces(db, user.id)),
    )


def _touch_spaces(db: Session, user_id: str | None) -> None:
    """Wake the reconciler for the affected live spaces: their ResourceQuota changes."""
    statement = update(Space).where(Space.deleted_at.is_(None)).values(desired_at=utcnow())
    if user_id is not None:
        statement = statement.where(Space.owner_id == user_id)
    db.execute(statement)


def _user(user_id: str) -> User:
    user = None if "\x00" in user_id else context.db().get(User, user_id)
    if user is None:
        raise NotFound(f"There is no user with id {user_id!r}.")
    return user


@blueprint.get("/quota")
@operation(
    summary="Your quota and usage",
    tags=["quotas"],
    scopes=[scopes.SPACES],
    response=UserQuota,
)
def my_quota() -> UserQuota:
    """The caller's quota and what their spaces use."""
    return user_quota(context.db(), tokens.caller().user)


@blueprint.get("/admin/users/<user_id>/quota")
@operation(
    summary="Show a user's quota",
    tags=["admin"],
    scopes=ADMIN,
    response=UserQuota,
    errors=[404],
)
def show_user_quota(user_id: str) -> UserQuota:
    """The user's quota and usage. Raises `NotFound`."""
    return user_quota(context.db(), _user(user_id))


@blueprint.put("/admin/users/<user_id>/quota")
@operation(
    summary="Set a user's quota overrides",
    description="Replaces all of the user's overrides: a value left out or null inherits "
    "the default. An empty object removes every override.",
    tags=["admin"],
    scopes=ADMIN,
    body=QuotaFields,
    response=UserQuota,
    errors=[404],
)
def set_user_quota(user_id: str, body: QuotaFields) -> UserQuota:
    """Store the overrides and wake the user's spaces. Raises `NotFound`."""
    who, db = tokens.caller(), context.db()
    user = _user(user_id)
    row = db.get(Quota, user.id)
    before = quotas.QuotaValues.of(row)
    if row is None:
        row = Quota(user_id=user.id)
        db.add(row)
    _values(body).store(row)
    _touch_spaces(db, user.id)
    audit.record(
        db,
        "quota.changed",
        actor=who.user,
        ip=context.client_ip(),
        target=user.id,
        details={"from": before.as_dict(), "to": body.model_dump()},
    )
    db.commit()
    return user_quota(db, user)


def _defaults_info(db: Session) -> QuotaDefaultsInfo:
    configured = context.config().cluster.quota_defaults
    return QuotaDefaultsInfo(
        configured=_fields(configured),
        stored=_fields(quotas.QuotaValues.of(db.get(QuotaDefaults, quotas.DEFAULTS_ROW))),
        effective=_fields(quotas.defaults(db, configured)),
    )


@blueprint.get("/admin/quota-defaults")
@operation(
    summary="Show the quota defaults",
    tags=["admin"],
    scopes=ADMIN,
    response=QuotaDefaultsInfo,
)
def show_quota_defaults() -> QuotaDefaultsInfo:
    """The configured defaults, the admins' stored ones, and what users without an override get."""
    return _defaults_info(context.db())


@blueprint.put("/admin/quota-defaults")
@operation(
    summary="Set the quota defaults",
    description="Replaces the stored defaults: a value left out or null falls back to the "
    "server's configuration.",
    tags=["admin"],
    scopes=ADMIN,
    body=QuotaFields,
    response=QuotaDefaultsInfo,
)
def set_quota_defaults(body: QuotaFields) -> QuotaDefaultsInfo:
    """Store the defaults and wake every live space."""
    who, db = tokens.caller(), context.db()
    row = db.get(QuotaDefaults, quotas.DEFAULTS_ROW)
    before = quotas.QuotaValues.of(row)
    if row is None:
        row = QuotaDefaults(id=quotas.DEFAULTS_ROW)
        db.add(row)
    _values(body).store(row)
    _touch_spaces(db, None)
    audit.record(
        db,
        "quota.defaults_changed",
        actor=who.user,
        ip=context.client_ip(),
        target="quota-defaults",
        details={"from": before.as_dict(), "to": body.model_dump()},
    )
    db.commit()
    return _defaults_info(db)


@blueprint.get("/admin/usage")
@operation(
    summary="Usage per user and per space",
    description="From each space's ResourceQuota as the reconciler last observed it.",
    tags=["admin"],
    scopes=ADMIN,
    response=UsageReport,
)
def usage() -> UsageReport:
    """Every user with live spaces, and every live space."""
    db = context.db()
    spaces = _live_spaces(db)
    by_owner: dict[str, list[Space]] = defaultdict(list)
    for space in spaces:
        by_owner[space.owner_id].append(space)
    configured = context.config().cluster.quota_defaults
    users = db.scalars(select(User).where(User.id.in_(by_owner)).order_by(User.username))
    return UsageReport(
        users=[
            UserUsage(
                user_id=user.id,
                username=user.username,
                quota=_fields(quotas.effective(db, user.id, configured)),
                usage=_usage(by_owner[user.id]),
            )
            for user in users
        ],
        spaces=[
            SpaceUsage(
                id=s.id,
                name=s.name,
                owner_id=s.owner_id,
                phase=s.phase,
                hard=s.quota_hard,
                used=s.quota_used,
            )
            for s in spaces
        ],
    )
