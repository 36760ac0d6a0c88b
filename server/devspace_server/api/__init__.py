"""The HTTP API, one blueprint per resource, each operation declared with `@operation`.

`register(app)` mounts them all; resources to come (spaces, users, quotas, SSH
certificates, tokens) add a module here and a line to `BLUEPRINTS`.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from devspace_server.api import (
    audit,
    gateway,
    health,
    openapi,
    quotas,
    reconciler,
    spaces,
    ssh,
    tokens,
    users,
)

BLUEPRINTS: tuple[Blueprint, ...] = (
    health.blueprint,
    openapi.blueprint,
    users.blueprint,
    tokens.blueprint,
    audit.blueprint,
    ssh.blueprint,
    spaces.blueprint,
    quotas.blueprint,
    reconciler.blueprint,
    # Not public: the SSH gateway's internal question, outside /api/v1 and the OpenAPI document.
    gateway.blueprint,
)


def register(app: Flask) -> None:
    """Mount every API blueprint on `app`."""
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
