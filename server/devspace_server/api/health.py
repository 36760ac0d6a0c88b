"""Liveness and readiness, for Kubernetes probes and for `serve`'s own check."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint

from devspace_server import context, db
from devspace_server.api.operations import Model, operation

blueprint = Blueprint("health", __name__)


class Health(Model):
    """The answer of a passing probe."""

    status: Literal["ok"] = "ok"


@blueprint.get("/healthz")
@operation(summary="Liveness: the process answers", tags=["meta"], response=Health, public=True)
def healthz() -> Health:
    """Always ok while the worker can answer; touches nothing else."""
    return Health()


@blueprint.get("/readyz")
@operation(
    summary="Readiness: the database is reachable",
    tags=["meta"],
    response=Health,
    errors=[503],
    public=True,
)
def readyz() -> Health:
    """Ok if the database answers `SELECT 1`; raises `DatabaseUnavailable` (503) if not."""
    db.check_reachable(context.state().engine)
    return Health()
