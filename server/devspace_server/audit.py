"""The audit log: who did what to which target, when, and from where."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from devspace_server import metrics
from devspace_server.models import AuditEvent, User


def record(
    db: Session,
    action: str,
    *,
    actor: User | None,
    ip: str | None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to `db` (committed with the caller's transaction) and return it.

    `action` is a dotted verb such as `login.succeeded`; `details` must be JSON-serialisable
    and must never hold a secret.
    """
    event = AuditEvent(
        actor_id=actor.id if actor else None,
        actor_name=actor.username if actor else None,
        action=action,
        target=target,
        ip=ip,
        details=details or {},
    )
    db.add(event)
    # Counted here so that the metrics and the audit log cannot disagree.
    metrics.audited(action, details or {})
    return event
