"""Spaces: `/api/v1/spaces` and `/api/v1/spaces/{name}`.

The API writes the desired state and reads the observed status; it never talks to the
cluster. A space is named by its owner's choice of name, unique among their live spaces; its
id (and so its namespace) is random and never reused. Another user's space answers 404, as if
it did not exist, unless the caller is an admin using a token with the `admin` scope, who
sees every space and names someone else's with `?owner=<user id or username>`.

Creating, changing and deleting a space stamps `desired_at`, which the reconciler polls.
"""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager

from devspace_server import audit, ca, context, quotas
from devspace_server.api import reconciler
from devspace_server.api.operations import operation
from devspace_server.api.space_models import (
    HostKey,
    NewSpace,
    OwnerQuery,
    Port,
    QuotaUsage,
    Resources,
    SpaceChange,
    SpaceInfo,
    SpaceList,
    SpaceProblem,
    check_space_name,
)
from devspace_server.auth import scopes, tokens
from devspace_server.errors import Conflict, InvalidField, NotFound, ValidationFailed
from devspace_server.kube import spec as kube
from devspace_server.kube.meta import namespace_name
from devspace_server.models import Space, User, new_space_id, utcnow

blueprint = Blueprint("spaces", __name__, url_prefix="/api/v1/spaces")
SPACES = [scopes.SPACES]
TAGS = ["spaces"]


def space_info(space: Space, owner: User, settings: kube.ClusterSettings) -> SpaceInfo:
    """The description of `space` (owned by `owner`); never its host private key."""
    return SpaceInfo(
        id=space.id,
        name=space.name,
        owner_id=owner.id,
        owner=owner.username,
        namespace=namespace_name(space.id, settings),
        image=space.image,
        command=space.command,
        args=space.args,
        env=space.env,
        resources=Resources(
            cpu_request=space.cpu_request,
            memory_request=space.memory_request,
            cpu_limit=space.cpu_limit,
            memory_limit=space.memory_limit,
        ),
        storage=space.storage,
        ports=[Port.model_validate(p) for p in space.ports],
        stopped=space.stopped,
        phase=space.phase,
        reason=space.reason,
        problems=[SpaceProblem.model_validate(p) for p in space.problems],
        pod_ip=space.pod_ip,
        ready=space.ready,
        host_key=HostKey(public_key=space.host_public_key, fingerprint=space.host_key_fingerprint),
        quota=QuotaUsage(hard=space.quota_hard, used=space.quota_used),
        created_at=space.created_at,
        updated_at=space.updated_at,
        observed_at=space.observed_at,
        deleted_at=space.deleted_at,
    )


# The reconciler still has work on a space in these phases.
_PENDING_PHASES = frozenset({"provisioning", "deleting"})


def _info(space: Space) -> SpaceInfo:
    info = space_info(space, space.owner, context.config().cluster.settings)
    applied = space.observed_at is not None and space.observed_at >= space.desired_at
    if applied and space.phase not in _PENDING_PHASES:
        return info  # settled: the reconciler's health (a query) cannot change what it says
    health = reconciler.current_health()
    if health.ok:
        return info
    # The last observed status stays (it is still the best guess), but a space that waits
    # says why: a person cannot tell a slow reconciler from an unreachable cluster otherwise.
    changes = {"waiting": health.message}
    if space.phase in _PENDING_PHASES:
        changes["reason"] = health.message
    return info.model_copy(update=changes)


def _is_admin() -> bool:
    return scopes.ADMIN in tokens.caller().scopes


def _owner(named: str | None) -> User:
    """Whose spaces the request is about. Raises `NotFound` for anyone but the caller,
    unless the caller is an admin."""
    me = tokens.caller().user
    if named is None or named in (me.id, me.username):
        return me
    if _is_admin():
        found = context.db().scalar(
            select(User).where(or_(User.id == named, User.username == named))
        )
        if found is not None:
            return found
    raise NotFound(f"There is no user {named!r} whose spaces you can see.")


def live_space(db: Session, owner: User, name: str) -> Space:
    """The owner's live space called `name`. Raises `NotFound` saying so."""
    try:
        check_space_name(name)
    except ValueError:
        raise NotFound(f"There is no space named {name!r}: that is not a valid name.") from None
    space = db.scalar(
        select(Space).where(
            Space.owner_id == owner.id, Space.name == name, Space.deleted_at.is_(None)
        )
    )
    if space is None:
        whose = "You have" if owner.id == tokens.caller().user.id else f"{owner.username} has"
        raise NotFound(f"{whose} no space named {name!r}.")
    return space


def _resources(body: Resources) -> kube.Resources:
    resources = kube.Resources(**body.model_dump())
    try:
        quotas.check_request_within_limit(resources, context.config().cluster.settings)
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        raise ValidationFailed(
            [InvalidField(f"resources.{field}", f"#/resources/{field}", f"{exc}.")]
        ) from None
    return resources


def _fits(db: Session, owner: User, resources: kube.Resources, storage: str) -> quotas.QuotaValues:
    cluster = context.config().cluster
    quota = quotas.effective(db, owner.id, cluster.quota_defaults)
    quotas.check_fits(quotas.Demand(resources, storage), quota, cluster.settings)
    return quota


@blueprint.get("")
@operation(
    summary="List spaces",
    description="Your spaces; with an admin token, everyone's (or one owner's, with `owner`).",
    tags=TAGS,
    scopes=SPACES,
    query=OwnerQuery,
    response=SpaceList,
)
def list_spaces(query: OwnerQuery) -> SpaceList:
    """The live spaces the caller may see, by owner and name."""
    db = context.db()
    statement = select(Space).join(User, User.id == Space.owner_id)
    statement = statement.where(Space.deleted_at.is_(None))
    if query.owner is not None or not _is_admin():
        statement = statement.where(Space.owner_id == _owner(query.owner).id)
    # The owners come with the join, not one lazy load per space.
    statement = statement.options(contains_eager(Space.owner))
    spaces = db.scalars(statement.order_by(User.username, Space.name)).all()
    return SpaceList(items=[_info(s) for s in spaces])


@blueprint.post("")
@operation(
    summary="Create a space",
    description="Refused with 409 if the name is taken or the space would exceed your quota "
    "(the problem's `limit` names which).",
    tags=TAGS,
    scopes=SPACES,
    body=NewSpace,
    response=SpaceInfo,
    status=201,
    errors=[409],
)
def create_space(body: NewSpace) -> SpaceInfo:
    """Record a new space for the caller. Raises `Conflict` or `QuotaExceeded`."""
    who, db, cluster = tokens.caller(), context.db(), context.config().cluster
    # Serialise creations by one user, so two at once cannot both take the last space.
    db.execute(select(User.id).where(User.id == who.user.id).with_for_update())
    taken = db.scalar(
        select(Space.id).where(
            Space.owner_id == who.user.id, Space.name == body.name, Space.deleted_at.is_(None)
        )
    )
    if taken is not None:
        raise Conflict(f"You already have a space named {body.name!r}: choose another name.")
    quota = quotas.effective(db, who.user.id, cluster.quota_defaults)
    live = db.scalar(
        select(func.count())
        .select_from(Space)
        .where(Space.owner_id == who.user.id, Space.deleted_at.is_(None))
    )
    if quota.spaces is not None and (live or 0) >= quota.spaces:
        # Said to someone who just asked for one more: no "1 spaces", and no "delete one" to
        # someone who has none.
        have = f"{live} space{'s' if live != 1 else ''}" if live else "no spaces"
        what = "delete one, or ask" if live else "ask"
        raise quotas.QuotaExceeded(
            f"You have {have} and your quota allows {quota.spaces}: {what} an admin to raise "
            "your quota.",
            limit="spaces",
        )
    storage = body.storage or cluster.default_storage
    resources = _resources(body.resources)
    quotas.check_fits(quotas.Demand(resources, storage), quota, cluster.settings)
    host_key = ca.new_host_key()
    space_id = new_space_id()
    sealer = context.config().host_key_sealer
    if sealer is None:  # `create_app` refuses such a configuration: never store a key plain
        raise RuntimeError("no host key encryption key configured")
    # Sealed for this space id alone: it opens for no other row.
    stored_key = sealer.seal(space_id, host_key.private_openssh)
    space = Space(
        id=space_id,
        owner_id=who.user.id,
        name=body.name,
        image=body.image,
        command=body.command,
        args=body.args,
        env=body.env,
        ports=[p.model_dump() for p in body.ports],
        cpu_request=resources.cpu_request,
        memory_request=resources.memory_request,
        cpu_limit=resources.cpu_limit,
        memory_limit=resources.memory_limit,
        storage=storage,
        stopped=body.stopped,
        desired_at=utcnow(),
        host_private_key=stored_key,
        host_public_key=host_key.public_line,
        host_key_fingerprint=host_key.fingerprint,
    )
    space.owner = who.user
    db.add(space)
    audit.record(
        db,
        "space.created",
        actor=who.user,
        ip=context.client_ip(),
        target=space.id,
        details={"name": space.name, "image": space.image},
    )
    _commit(db, body.name)
    return _info(space)


def _commit(db: Session, name: str) -> None:
    try:
        db.commit()
    except IntegrityError:
        # Another request took the name between our check and our commit.
        db.rollback()
        raise Conflict(f"You already have a space named {name!r}: choose another name.") from None


@blueprint.get("/<name>")
@operation(
    summary="Show a space",
    description="Includes the phase and its reason, the pod IP, the sidecar's host key (pin "
    "it) and the space's quota usage.",
    tags=TAGS,
    scopes=SPACES,
    query=OwnerQuery,
    response=SpaceInfo,
    errors=[404],
)
def show_space(name: str, query: OwnerQuery) -> SpaceInfo:
    """One live space. Raises `NotFound`."""
    return _info(live_space(context.db(), _owner(query.owner), name))


@blueprint.patch("/<name>")
@operation(
    summary="Change, stop or start a space",
    description='`{"stopped": true}` scales the pod to zero and keeps the workspace; '
    '`{"stopped": false}` starts it again. New resources must fit your quota (409).',
    tags=TAGS,
    scopes=SPACES,
    query=OwnerQuery,
    body=SpaceChange,
    response=SpaceInfo,
    errors=[404, 409],
)
def change_space(name: str, query: OwnerQuery, body: SpaceChange) -> SpaceInfo:
    """Apply `body` to the space. Raises `NotFound` or `QuotaExceeded`."""
    who, db = tokens.caller(), context.db()
    space = live_space(db, _owner(query.owner), name)
    changed = sorted(body.model_dump(exclude_unset=True))
    if body.resources is not None:
        resources = _resources(body.resources)
        _fits(db, space.owner, resources, space.storage)
        space.cpu_request, space.memory_request = resources.cpu_request, resources.memory_request
        space.cpu_limit, space.memory_limit = resources.cpu_limit, resources.memory_limit
    if body.image is not None:
        space.image = body.image
    if body.command is not None:
        space.command = body.command
    if body.args is not None:
        space.args = body.args
    if body.env is not None:
        space.env = body.env
    if body.ports is not None:
        space.ports = [p.model_dump() for p in body.ports]
    if body.stopped is not None:
        space.stopped = body.stopped
    if changed:
        space.desired_at = utcnow()
        action = "space.changed"
        if changed == ["stopped"]:
            action = "space.stopped" if body.stopped else "space.started"
        audit.record(
            db,
            action,
            actor=who.user,
            ip=context.client_ip(),
            target=space.id,
            details={"name": space.name, "fields": changed},
        )
        db.commit()
    return _info(space)


@blueprint.delete("/<name>")
@operation(
    summary="Delete a space",
    description="Deletes the namespace and everything in it, the workspace too. The name is "
    "free at once; the space's id and namespace are never used again.",
    tags=TAGS,
    scopes=SPACES,
    query=OwnerQuery,
    response=SpaceInfo,
    status=202,
    errors=[404],
)
def delete_space(name: str, query: OwnerQuery) -> SpaceInfo:
    """Mark the space deleted; the reconciler removes its namespace. Raises `NotFound`."""
    who, db, now = tokens.caller(), context.db(), utcnow()
    space = live_space(db, _owner(query.owner), name)
    space.deleted_at = now
    space.desired_at = now
    space.phase = "deleting"
    space.reason = "waiting for the reconciler to delete the namespace"
    audit.record(
        db,
        "space.deleted",
        actor=who.user,
        ip=context.client_ip(),
        target=space.id,
        details={"name": space.name, "owner": space.owner_id},
    )
    db.commit()
    return _info(space)
