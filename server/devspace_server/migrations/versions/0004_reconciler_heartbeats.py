"""Reconciler heartbeats: each replica's liveness, leadership and last contact with the cluster.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reconciler_heartbeats",
        sa.Column("identity", sa.String(128), nullable=False),
        sa.Column("leader", sa.Boolean(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("beat_at", TIMESTAMP, nullable=False),
        sa.Column("contacted_at", TIMESTAMP, nullable=True),
        sa.Column("error", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("identity", name=op.f("pk_reconciler_heartbeats")),
    )
    op.create_index(op.f("ix_reconciler_heartbeats_beat_at"), "reconciler_heartbeats", ["beat_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_reconciler_heartbeats_beat_at"), table_name="reconciler_heartbeats")
    op.drop_table("reconciler_heartbeats")
