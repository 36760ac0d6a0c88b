"""Alembic's environment: runs on the connection that `devspace_server.db` hands over.

There is no alembic.ini: migrations run through `devspace-server migrate` (and `serve`),
which pass an open connection in `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context

from devspace_server.models import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run migrations with `devspace-server migrate`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
