"""Reading the audit log: `GET /api/v1/admin/audit`, newest first, for admins.

Pages are cut by event id (`before`), not by offset, so that events written while someone
reads do not shift what the next page shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from flask import Blueprint
from pydantic import Field
from sqlalchemy import select

from devspace_server import context
from devspace_server.api.operations import Model, operation
from devspace_server.auth import scopes
from devspace_server.models import AuditEvent

blueprint = Blueprint("audit", __name__, url_prefix="/api/v1/admin/audit")


# PostgreSQL refuses text with NUL in it, so a filter with one would fail in the driver.
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class AuditQuery(Model):
    """Which events to show."""

    actor: Text | None = Field(default=None, description="Only events by this user id.")
    target: Text | None = Field(default=None, description="Only events about this target.")
    action: Text | None = Field(default=None, description="Only this action, e.g. `user.disabled`.")
    before: Annotated[
        int | None, Field(ge=1, le=2**63 - 1, description="Only events older than this id.")
    ] = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class AuditEntry(Model):
    """One audited action: who, what, to which target, when and from where."""

    id: int
    created_at: datetime
    actor_id: str | None
    actor_name: str | None
    action: str
    target: str | None
    ip: str | None
    details: dict[str, Any]


class AuditPage(Model):
    """One page of events, newest first."""

    items: list[AuditEntry]
    next_before: int | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )


@blueprint.get("")
@operation(
    summary="Read the audit log",
    tags=["admin"],
    scopes=[scopes.ADMIN],
    query=AuditQuery,
    response=AuditPage,
)
def read_audit_log(query: AuditQuery) -> AuditPage:
    """Events matching `query`, newest first, one page at a time."""
    selection = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(query.limit + 1)
    if query.actor is not None:
        selection = selection.where(AuditEvent.actor_id == query.actor)
    if query.target is not None:
        selection = selection.where(AuditEvent.target == query.target)
    if query.action is not None:
        selection = selection.where(AuditEvent.action == query.action)
    if query.before is not None:
        selection = selection.where(AuditEvent.id < query.before)
    events = list(context.db().scalars(selection).all())
    more = len(events) > query.limit
    events = events[: query.limit]
    return AuditPage(
        items=[
            AuditEntry(
                id=e.id,
                created_at=e.created_at,
                actor_id=e.actor_id,
                actor_name=e.actor_name,
                action=e.action,
                target=e.target,
                ip=e.ip,
                details=e.details,
            )
            for e in events
        ],
        next_before=events[-1].id if more else None,
    )
