"""OAuth and API tokens: access, refresh and personal tokens, authorization codes, device
authorizations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", BIG_ID, autoincrement=True, nullable=False)


def _at(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, TIMESTAMP, nullable=nullable)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("family", sa.String(36), nullable=True),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("scope", sa.String(255), nullable=False),
        _at("expires_at"),
        _at("revoked_at"),
        _at("rotated_at"),
        _at("last_used_at"),
        _at("created_at", nullable=False),
        _user_fk("api_tokens"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sa.CheckConstraint(
            "kind IN ('access', 'refresh', 'personal')", name=op.f("ck_api_tokens_token_kind")
        ),
    )
    op.create_index(op.f("ix_api_tokens_expires_at"), "api_tokens", ["expires_at"])
    op.create_index(op.f("ix_api_tokens_family"), "api_tokens", ["family"])
    op.create_index("ix_api_tokens_user_id_kind", "api_tokens", ["user_id", "kind"])

    op.create_table(
        "oauth_authorization_codes",
        _id(),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("redirect_uri", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("code_challenge_method", sa.String(8), nullable=False),
        _at("expires_at", nullable=False),
        _at("used_at"),
        sa.Column("family", sa.String(36), nullable=True),
        _at("created_at", nullable=False),
        _user_fk("oauth_authorization_codes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_authorization_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_oauth_authorization_codes_code_hash")),
    )
    op.create_index(
        op.f("ix_oauth_authorization_codes_expires_at"), "oauth_authorization_codes", ["expires_at"]
    )
    op.create_index(
        op.f("ix_oauth_authorization_codes_user_id"), "oauth_authorization_codes", ["user_id"]
    )

    op.create_table(
        "oauth_device_authorizations",
        _id(),
        sa.Column("device_code_hash", sa.String(64), nullable=False),
        sa.Column("user_code", sa.String(16), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=True),
        _at("expires_at", nullable=False),
        sa.Column("interval", sa.Integer(), nullable=False),
        _at("last_polled_at"),
        sa.Column("family", sa.String(36), nullable=True),
        _at("created_at", nullable=False),
        _user_fk("oauth_device_authorizations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_device_authorizations")),
        sa.UniqueConstraint(
            "device_code_hash", name=op.f("uq_oauth_device_authorizations_device_code_hash")
        ),
        sa.UniqueConstraint("user_code", name=op.f("uq_oauth_device_authorizations_user_code")),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'redeemed')",
            name=op.f("ck_oauth_device_authorizations_device_status"),
        ),
    )
    op.create_index(
        op.f("ix_oauth_device_authorizations_expires_at"),
        "oauth_device_authorizations",
        ["expires_at"],
    )


def downgrade() -> None:
    for table in ("oauth_device_authorizations", "oauth_authorization_codes", "api_tokens"):
        op.drop_table(table)
