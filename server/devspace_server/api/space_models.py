"""The request and response bodies of the spaces and quotas APIs, and their validation.

Validators raise `ValueError` with a sentence a person can act on; `@operation` turns it into
a 422 naming the field. Strings refuse NUL (PostgreSQL cannot store it).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from devspace_server.api.operations import Model
from devspace_server.kube.spec import SIDECAR_PORT
from devspace_server.models import IMAGE_MAX, SPACE_NAME_MAX
from devspace_server.quantity import MAX_LENGTH, is_quantity

_NAME_CHARS = re.compile(r"[a-z0-9-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Kubernetes' IANA_SVC_NAME: pydantic's `pattern` searches, so it is anchored here.
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_ITEMS = 64
MAX_ARG = 4096


def check_space_name(name: str) -> str:
    """`name` if it is a valid space name (a DNS-1123 label of at most 40 characters).

    Raises `ValueError` saying exactly what is wrong with it.
    """
    rule = f"use 1 to {SPACE_NAME_MAX} lower-case letters, digits and '-'"
    if not name:
        raise ValueError(f"The name is empty: {rule}")
    if len(name) > SPACE_NAME_MAX:
        raise ValueError(f"The name is {len(name)} characters long: {rule}")
    if name != name.lower() and _NAME_CHARS.fullmatch(name.lower()):
        raise ValueError(f"The name {name!r} has upper-case letters: use {name.lower()!r}")
    bad = sorted({c for c in name if not _NAME_CHARS.fullmatch(c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValueError(f"The name {name!r} has characters not allowed ({shown}): {rule}")
    if name[0] == "-" or name[-1] == "-":
        raise ValueError(f"The name {name!r} must start and end with a letter or a digit")
    return name


def _check_image(image: str) -> str:
    if not image.strip() or any(c.isspace() or not c.isprintable() for c in image):
        raise ValueError(
            "The image must be an image reference without spaces or control characters, e.g. "
            "python:3.12 or ghcr.io/org/dev:latest"
        )
    return image


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for key in env:
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(
                f"The variable name {key!r} is not valid: use letters, digits and '_', "
                "not starting with a digit"
            )
    return env


def _check_ports(ports: list[Port]) -> list[Port]:
    names = [p.name for p in ports]
    numbers = [p.port for p in ports]
    if len(set(names)) != len(names) or len(set(numbers)) != len(numbers):
        raise ValueError("Each port needs its own name and its own number")
    return ports


def _not_the_sidecars(port: int) -> int:
    # The dev container shares the pod's network with the sidecar, which listens there.
    if port == SIDECAR_PORT:
        raise ValueError(f"Port {SIDECAR_PORT} is the SSH sidecar's: choose another")
    return port


NoNul = StringConstraints(pattern=r"^[^\x00]*$")
SpaceName = Annotated[str, AfterValidator(check_space_name)]
Quantity = Annotated[
    str,
    StringConstraints(max_length=MAX_LENGTH),
    AfterValidator(is_quantity),
    Field(description="A Kubernetes quantity, e.g. `500m`, `2`, `512Mi`, `10Gi`."),
]
Image = Annotated[
    str, StringConstraints(min_length=1, max_length=IMAGE_MAX), AfterValidator(_check_image)
]
Arg = Annotated[str, StringConstraints(max_length=MAX_ARG), NoNul]
Args = Annotated[list[Arg], Field(max_length=MAX_ITEMS)]
EnvValue = Annotated[str, StringConstraints(max_length=MAX_ARG), NoNul]
Env = Annotated[dict[str, EnvValue], Field(max_length=MAX_ITEMS), AfterValidator(_check_env)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


class Port(Model):
    """A port the dev container listens on, for the CLI to tunnel."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=15, pattern=_PORT_NAME.pattern)]
    port: Annotated[int, Field(ge=1, le=65535), AfterValidator(_not_the_sidecars)]


Ports = Annotated[list[Port], Field(max_length=MAX_ITEMS), AfterValidator(_check_ports)]


class Resources(Model):
    """The dev container's CPU and memory; what is left out gets the cluster's defaults."""

    cpu_request: Quantity | None = None
    memory_request: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory_limit: Quantity | None = None


class NewSpace(Model):
    """A space to create."""

    name: SpaceName = Field(description="Unique among your spaces; 1-40 of a-z, 0-9, '-'.")
    image: Image = Field(description="The dev container's image.")
    command: Args = Field(default_factory=list, description="Replaces the image's entrypoint.")
    args: Args = Field(default_factory=list, description="Replaces the image's command.")
    env: Env = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    storage: Quantity | None = Field(
        default=None, description="The workspace volume's size; the configured default if left out."
    )
    ports: Ports = Field(default_factory=list)
    stopped: bool = False


class SpaceChange(Model):
    """What to change about a space; fields left out stay as they are."""

    stopped: bool | None = Field(
        default=None, description="true stops the pod (the workspace is kept); false starts it."
    )
    image: Image | None = None
    command: Args | None = None
    args: Args | None = None
    env: Env | None = None
    resources: Resources | None = Field(
        default=None, description="Replaces all four values; one left out gets the default."
    )
    ports: Ports | None = None


class SpaceProblem(Model):
    """Something wrong with the space that a person can act on."""

    kind: str
    message: str


class HostKey(Model):
    """The sidecar's SSH host key: pin it, never trust on first use."""

    public_key: str = Field(description="One OpenSSH public key line, for known_hosts.")
    fingerprint: str = Field(description="`SHA256:…`, as ssh shows it.")


class QuotaUsage(Model):
    """A space's ResourceQuota, as last observed: its caps and what is in use."""

    hard: dict[str, str]
    used: dict[str, str]


class SpaceInfo(Model):
    """A space: what it should be, and what the reconciler last saw."""

    id: str = Field(description="Immutable and never reused; names the namespace.")
    name: str
    owner_id: str
    owner: str = Field(description="The owner's username.")
    namespace: str
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    resources: Resources
    storage: str
    ports: list[Port]
    stopped: bool
    phase: str = Field(
        description="provisioning, starting, running, stopped, error, deleting or deleted."
    )
    reason: str = Field(description="Why the space is in this phase, in words.")
    problems: list[SpaceProblem]
    pod_ip: str | None = Field(description="Where the gateway reaches the sidecar.")
    ready: bool
    host_key: HostKey
    quota: QuotaUsage
    created_at: datetime
    updated_at: datetime
    observed_at: datetime | None = Field(description="When the reconciler last looked.")
    deleted_at: datetime | None
    waiting: str | None = Field(
        default=None,
        description="Set while the space's desired state is not yet applied and the reason is "
        "outside the space (the cluster unreachable, no reconciler running): what holds it up.",
    )


class SpaceList(Model):
    """Spaces, by owner and name."""

    items: list[SpaceInfo]


class OwnerQuery(Model):
    """Whose space: admins may name another user (by id or username); others only themselves."""

    owner: Annotated[str, StringConstraints(max_length=64), NoNul] | None = None


class QuotaFields(Model):
    """Quota values. Counts are whole numbers, the rest Kubernetes quantities; every value
    but `spaces` caps each space (its ResourceQuota). null: not set at this level."""

    spaces: Count | None = Field(default=None, description="How many live spaces.")
    requests_cpu: Quantity | None = None
    requests_memory: Quantity | None = None
    limits_cpu: Quantity | None = None
    limits_memory: Quantity | None = None
    requests_storage: Quantity | None = None
    pods: Count | None = None
    persistentvolumeclaims: Count | None = None
    services: Count | None = None


class Usage(Model):
    """What a user's spaces use, summed from their ResourceQuotas' last observed status."""

    spaces: int = Field(description="Live spaces.")
    used: dict[str, str]


class UserQuota(Model):
    """A user's quota: their own overrides, what applies, and what they use."""

    user_id: str
    username: str
    override: QuotaFields = Field(description="Set for this user; null inherits the default.")
    effective: QuotaFields = Field(description="What applies: override, else the defaults.")
    usage: Usage


class QuotaDefaultsInfo(Model):
    """The defaults for users without an override."""

    configured: QuotaFields = Field(description="From the server's configuration.")
    stored: QuotaFields = Field(description="Set by admins here; null keeps the configured.")
    effective: QuotaFields


class SpaceUsage(Model):
    """One space's usage."""

    id: str
    name: str
    owner_id: str
    phase: str
    hard: dict[str, str]
    used: dict[str, str]


class UserUsage(Model):
    """One user's usage against their quota."""

    user_id: str
    username: str
    quota: QuotaFields
    usage: Usage


class UsageReport(Model):
    """Usage of every user who has spaces, and of every live space."""

    users: list[UserUsage]
    spaces: list[SpaceUsage]
