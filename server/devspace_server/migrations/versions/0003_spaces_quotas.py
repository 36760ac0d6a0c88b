"""Spaces (desired state and observed status), per-user quotas and the quota defaults.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
QUANTITY = sa.String(64)


def _at(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, TIMESTAMP, nullable=nullable)


def _limits() -> list[sa.Column[object]]:
    return [
        sa.Column("spaces", sa.Integer(), nullable=True),
        sa.Column("requests_cpu", QUANTITY, nullable=True),
        sa.Column("requests_memory", QUANTITY, nullable=True),
        sa.Column("limits_cpu", QUANTITY, nullable=True),
        sa.Column("limits_memory", QUANTITY, nullable=True),
        sa.Column("requests_storage", QUANTITY, nullable=True),
        sa.Column("pods", sa.Integer(), nullable=True),
        sa.Column("persistentvolumeclaims", sa.Integer(), nullable=True),
        sa.Column("services", sa.Integer(), nullable=True),
        _at("created_at", nullable=False),
        _at("updated_at", nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("user_id", sa.String(36), nullable=False),
        *_limits(),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_quotas_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_quotas")),
    )
    op.create_table(
        "quota_defaults",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        *_limits(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_defaults")),
    )
    op.create_table(
        "spaces",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("ports", sa.JSON(), nullable=False),
        sa.Column("cpu_request", QUANTITY, nullable=True),
        sa.Column("memory_request", QUANTITY, nullable=True),
        sa.Column("cpu_limit", QUANTITY, nullable=True),
        sa.Column("memory_limit", QUANTITY, nullable=True),
        sa.Column("storage", QUANTITY, nullable=False),
        sa.Column("stopped", sa.Boolean(), nullable=False),
        _at("desired_at", nullable=False),
        _at("deleted_at"),
        sa.Column("host_private_key", sa.Text(), nullable=False),
        sa.Column("host_public_key", sa.String(255), nullable=False),
        sa.Column("host_key_fingerprint", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=False),
        sa.Column("pod_ip", sa.String(45), nullable=True),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("quota_used", sa.JSON(), nullable=False),
        sa.Column("quota_hard", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        _at("observed_at"),
        _at("finalized_at"),
        _at("created_at", nullable=False),
        _at("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_spaces_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spaces")),
    )
    op.create_index(op.f("ix_spaces_owner_id"), "spaces", ["owner_id"])
    op.create_index("ix_spaces_desired_at", "spaces", ["desired_at"])
    op.create_index(
        "ix_spaces_owner_id_name_live",
        "spaces",
        ["owner_id", "name"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    for table in ("spaces", "quota_defaults", "quotas"):
        op.drop_table(table)
