"""`GET /api/v1/reconciler`: whether the reconciler runs and reaches the cluster.

The API holds no cluster credentials; it reads the heartbeats the reconciler replicas write
(`reconcile/heartbeat.py`). The same verdict tells a space that waits why it waits
(`SpaceInfo.waiting`). Anyone with the `spaces` scope may ask; the replicas' names are shown
to admins only.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, g
from pydantic import Field

from devspace_server import context
from devspace_server.api.operations import Model, operation
from devspace_server.auth import scopes, tokens
from devspace_server.reconcile.heartbeat import ClusterHealth, cluster_health

blueprint = Blueprint("reconciler", __name__, url_prefix="/api/v1/reconciler")


class ReplicaInfo(Model):
    """One live reconciler replica."""

    identity: str
    leader: bool
    beat_at: datetime = Field(description="Its last heartbeat.")
    contacted_at: datetime | None = Field(description="Its last answer from the API server.")
    error: str | None = Field(description="Its last failure talking to the API server.")


class ReconcilerHealth(Model):
    """The reconciler's health, as its heartbeats in the database say."""

    state: str = Field(description="ok, cluster-unreachable, no-leader or no-reconciler.")
    message: str = Field(description="What it means for spaces, in words.")
    contacted_at: datetime | None = Field(
        description="The last time a reconciler got an answer from the Kubernetes API server."
    )
    replicas: list[ReplicaInfo] | None = Field(
        description="Live replicas (admins only; null for others)."
    )


def current_health() -> ClusterHealth:
    """The verdict, read once per request."""
    if "cluster_health" not in g:
        g.cluster_health = cluster_health(context.db())
    found: ClusterHealth = g.cluster_health
    return found


@blueprint.get("")
@operation(
    summary="Reconciler and cluster health",
    description="Whether a reconciler runs, leads and reaches the Kubernetes API server; when "
    "it does not, spaces show what was last observed and changes wait.",
    tags=["spaces"],
    scopes=[scopes.SPACES],
    response=ReconcilerHealth,
)
def show_health() -> ReconcilerHealth:
    """The reconciler's health; never fails because the cluster is down."""
    health = current_health()
    admin = scopes.ADMIN in tokens.caller().scopes
    return ReconcilerHealth(
        state=health.state.value,
        message=health.message,
        contacted_at=health.contacted_at,
        replicas=[
            ReplicaInfo(
                identity=r.identity,
                leader=r.leader,
                beat_at=r.beat_at,
                contacted_at=r.contacted_at,
                error=r.error,
            )
            for r in health.replicas
        ]
        if admin
        else None,
    )
