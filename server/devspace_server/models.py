"""All database tables, as typed SQLAlchemy 2 models.

Shared columns come from mixins (`IntegerId`, `Created`, `Timestamps`), as in JupyterHub's
`orm.py`. Every timestamp is an aware UTC `datetime`, on SQLite as on PostgreSQL. The schema
changes only through the Alembic migrations in `migrations/`; a test keeps the two equal.
"""

from __future__ import annotations

import enum
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Explicit constraint names: Alembic can then drop and alter them (and SQLite's batch mode
# can rebuild tables) without guessing.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

USERNAME_MAX = 64
EMAIL_MAX = 320
IP_MAX = 45  # the longest textual IPv6 address
SPACE_ID_MAX = 16
SPACE_NAME_MAX = 40
IMAGE_MAX = 512
QUANTITY_MAX = 64
REASON_MAX = 1024


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def new_user_id() -> str:
    """A random user id. It never changes and is never reused: it is the SSH principal."""
    return str(uuid.uuid4())


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use an aware UTC datetime (models.utcnow())")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """The declarative base; `Base.metadata` is what the migrations must produce."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UtcDateTime}  # noqa: RUF012


class IntegerId:
    """A surrogate integer primary key, for rows nobody names from outside."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)


class Created:
    """When the row was written; for rows that never change (events, attempts)."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Timestamps(Created):
    """When the row was written and last changed."""

    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Role(enum.StrEnum):
    """What a user may do: `admin` manages users and quotas; `user` uses their own spaces."""

    ADMIN = "admin"
    USER = "user"


class User(Timestamps, Base):
    """A person. `id` is random, immutable and never reused; it is their SSH principal."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_user_id)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX), index=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    role: Mapped[Role] = mapped_column(
        Enum(
            Role,
            name="role",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda roles: [r.value for r in roles],
            validate_strings=True,
        ),
        default=Role.USER,
    )
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # None for people who sign in only through an upstream provider.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    last_login_at: Mapped[datetime | None]

    identities: Mapped[list[Identity]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def is_admin(self) -> bool:
        """True if the user has the admin role."""
        return self.role is Role.ADMIN


class Identity(IntegerId, Timestamps, Base):
    """An upstream account (OpenID Connect issuer and subject) that signs in as a `User`.

    Keyed on (issuer, subject), never on email: an email address can change hands.
    """

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    last_login_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="identities")


class AuditEvent(IntegerId, Created, Base):
    """Who did what to which target, when and from where. Written once, never changed."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_created_at", "created_at"),)

    # Kept apart from `actor_id` so the record still says who it was if the user is removed.
    actor_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    actor_name: Mapped[str | None] = mapped_column(String(USERNAME_MAX))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(IP_MAX))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LoginAttempt(IntegerId, Created, Base):
    """One password sign-in attempt. Counted to throttle guessing across all workers."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_created_at", "username", "created_at"),
        Index("ix_login_attempts_ip_created_at", "ip", "created_at"),
        Index("ix_login_attempts_created_at", "created_at"),
    )

    # The name as typed (normalised), whether or not such a user exists: guessing at names
    # that do not exist is throttled the same way.
    username: Mapped[str] = mapped_column(String(USERNAME_MAX))
    ip: Mapped[str] = mapped_column(String(IP_MAX))
    succeeded: Mapped[bool] = mapped_column(Boolean)


class WebSession(IntegerId, Timestamps, Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ip: Mapped[str | None] = mapped_column(String(IP_MAX))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship()


class TokenKind(enum.StrEnum):
    """What a bearer credential is: an OAuth access or refresh token, or a personal one."""

    ACCESS = "access"
    REFRESH = "refresh"
    PERSONAL = "personal"


class ApiToken(IntegerId, Created, Base):
    """A credential for the API. Only the SHA-256 of the secret is stored.

    OAuth tokens of one sign-in share a `family`: every access and refresh token issued
    from one authorization code or device code and its refreshes. Reusing a rotated
    refresh token revokes the family, because one of the two users is a thief.
    """

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user_id_kind", "user_id", "kind"),)

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[TokenKind] = mapped_column(
        Enum(
            TokenKind,
            name="token_kind",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda kinds: [k.value for k in kinds],
            validate_strings=True,
        )
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str | None] = mapped_column(String(64))
    family: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(100))
    """A person's label for a personal token, e.g. `ci`."""
    scope: Mapped[str] = mapped_column(String(255))
    """Space-separated scopes, as OAuth writes them."""
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]
    rotated_at: Mapped[datetime | None]
    """For a refresh token: when it was exchanged. Any later use is a replay."""
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes as a set."""
        return frozenset(self.scope.split())


class AuthorizationCode(IntegerId, Created, Base):
    """An OAuth authorization code (stored hashed), kept after use to detect a replay."""

    __tablename__ = "oauth_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(255))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
    family: Mapped[str | None] = mapped_column(String(36))
    """The token family issued for this code, revoked if the code is presented again."""


class DeviceStatus(enum.StrEnum):
    """Where a device authorization stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    REDEEMED = "redeemed"


class DeviceAuthorization(IntegerId, Created, Base):
    """One RFC 8628 device authorization: the device code (hashed), the code a person types,
    and the polling state, so that any worker answers a poll the same way."""

    __tablename__ = "oauth_device_authorizations"

    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(255))
    """Requested scope; once approved, the granted scope."""
    status: Mapped[DeviceStatus] = mapped_column(
        Enum(
            DeviceStatus,
            name="device_status",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda states: [s.value for s in states],
            validate_strings=True,
        ),
        default=DeviceStatus.PENDING,
    )
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    interval: Mapped[int] = mapped_column(Integer)
    """Seconds the device must wait between polls; grows by 5 on each `slow_down`."""
    last_polled_at: Mapped[datetime | None]
    family: Mapped[str | None] = mapped_column(String(36))


def new_space_id() -> str:
    """A random space id: 16 hex digits, the namespace's name after the prefix.

    Never reused: a deleted space keeps its row, so the primary key refuses a repeat.
    """
    return secrets.token_hex(8)


class QuotaLimits:
    """What a user may consume; every column None means "not set here" (inherit).

    `spaces` counts a user's live spaces; the rest are per space, the caps of each space's
    ResourceQuota (Kubernetes quantity strings; counts as integers).
    """

    spaces: Mapped[int | None] = mapped_column(Integer)
    requests_cpu: Mapped[str | None] = mapped_column(String(QUANTITY_MAX))
    requests_memory: Mapped[str | None] = mapped_column(String(QUANTITY_MAX))
    limits_cpu: Mapped[str | None] = mapped_column(String(QUANTITY_MAX))
    limits_memory: Mapped[str | None] = mapped_column(String(QUANTITY_MAX))
    requests_storage: Mapped[str | None] = mapped_column(String(QUANTITY_MAX))
    pods: Mapped[int | None] = mapped_column(Integer)
    persistentvolumeclaims: Mapped[int | None] = mapped_column(Integer)
    services: Mapped[int | None] = mapped_column(Integer)


class Quota(QuotaLimits, Timestamps, Base):
    """One user's overrides of the default quota; a column left None inherits the default."""

    __tablename__ = "quotas"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class QuotaDefaults(QuotaLimits, Timestamps, Base):
    """The defaults admins set through the API (one row, id 1); None inherits the config's."""

    __tablename__ = "quota_defaults"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class Space(Timestamps, Base):
    """A developer's namespace and dev pod: the desired state, and the status last observed.

    `id` is random, immutable and names the namespace; a deleted space keeps its row with
    `deleted_at` set (so the id is never handed out again) and its `name` becomes free.
    `desired_at` changes only with the desired state, never with a status write: the
    reconciler polls it to learn of changes without waking itself with its own writes.
    """

    __tablename__ = "spaces"
    __table_args__ = (
        # Names are unique per owner among live spaces only: a deleted name can be reused.
        Index(
            "ix_spaces_owner_id_name_live",
            "owner_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_spaces_desired_at", "desired_at"),
    )

    id: Mapped[str] = mapped_column(String(SPACE_ID_MAX), primary_key=True, default=new_space_id)
    # Not cascaded: removing a user with spaces would orphan their namespaces.
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(SPACE_NAME_MAX))
    image: Mapped[str] = mapped_column(String(IMAGE_MAX))
    command: Mapped[list[str]] = mapped_column(JSON, default=list)
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    ports: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    cpu_request: Mapped[str | None] = mapped_column(String(QUANTITY_MAX))
    memory_request: Mapped[str | None] = mapped_column(String(QUANTITY_MAX))
    cpu_limit: Mapped[str | None] = mapped_column(String(QUANTITY_MAX))
    memory_limit: Mapped[str | None] = mapped_column(String(QUANTITY_MAX))
    storage: Mapped[str] = mapped_column(String(QUANTITY_MAX))
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    desired_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]

    # The sidecar's sshd host key. The private half goes only to the space's Secret; the
    # API publishes the public half and its fingerprint, which the CLI pins.
    host_private_key: Mapped[str] = mapped_column(Text)
    host_public_key: Mapped[str] = mapped_column(String(255))
    host_key_fingerprint: Mapped[str] = mapped_column(String(64))

    # What the reconciler last observed (written only by it).
    phase: Mapped[str] = mapped_column(String(16), default="provisioning")
    reason: Mapped[str] = mapped_column(String(REASON_MAX), default="waiting for the reconciler")
    pod_ip: Mapped[str | None] = mapped_column(String(IP_MAX))
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    quota_used: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    quota_hard: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    problems: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    observed_at: Mapped[datetime | None]
    finalized_at: Mapped[datetime | None]

    owner: Mapped[User] = relationship()


class ReconcilerHeartbeat(Base):
    """One reconciler replica's heartbeat (written only by it, every few seconds).

    `beat_at` says the process is alive; `contacted_at` is its last successful exchange with
    the Kubernetes API server (None: never yet), so the API can tell "the reconciler is down"
    from "the cluster is unreachable" without cluster credentials of its own.
    """

    __tablename__ = "reconciler_heartbeats"

    identity: Mapped[str] = mapped_column(String(128), primary_key=True)
    leader: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime] = mapped_column(index=True)
    contacted_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(REASON_MAX))
