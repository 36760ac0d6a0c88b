"""What a space looks like from the cluster: a pure reading of observed objects.

`read_status` turns the namespace, Deployment, pods and ResourceQuota into a `SpaceStatus`
with a phase and a reason a person can act on. It calls nothing, so every case is a unit test.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from kubernetes import client

from devspace_server.kube.workload import DEV_CONTAINER
from devspace_server.reconcile.cluster import Observed
from devspace_server.reconcile.errors import cut


class Phase(enum.StrEnum):
    """Where a space is in its life, as the API reports it."""

    PROVISIONING = "provisioning"  # objects not all applied yet
    STARTING = "starting"  # applied; the pod is on its way
    RUNNING = "running"  # the pod is up and the sidecar answers
    STOPPED = "stopped"  # scaled to zero; the workspace is kept
    ERROR = "error"  # something a person must fix; see `problems`
    DELETING = "deleting"  # namespace terminating
    DELETED = "deleted"  # namespace gone: finalized


class ProblemKind(enum.StrEnum):
    """The kinds of failure a person can act on."""

    IMAGE_PULL = "image-pull"
    QUOTA_EXCEEDED = "quota-exceeded"
    UNSCHEDULABLE = "unschedulable"
    POD_SECURITY = "pod-security"
    CRASHING = "crashing"
    CLUSTER = "cluster"


@dataclass(frozen=True)
class Problem:
    """One failure, with a message that says what went wrong and, where known, what to do."""

    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class SpaceStatus:
    """The observed state of one space, written back to the store."""

    phase: Phase
    reason: str
    pod_ip: str | None = None
    ready: bool = False
    quota_used: Mapping[str, str] = field(default_factory=dict)
    quota_hard: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()


_IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


def _replica_failure(deployment: client.V1Deployment | None) -> Problem | None:
    status = deployment.status if deployment else None
    for condition in (status.conditions if status else None) or []:
        if condition.type == "ReplicaFailure" and condition.status == "True":
            message = condition.message or condition.reason or "the pod could not be created"
            if "serviceaccount" in message and "not found" in message:
                # A new namespace's default ServiceAccount comes a moment after it; the
                # ReplicaSet controller retries, so this is "starting", not an error.
                continue
            if "exceeded quota" in message:
                return Problem(
                    ProblemKind.QUOTA_EXCEEDED,
                    cut(
                        f"the pod does not fit the space's quota; lower its resources or raise "
                        f"the quota ({message})"
                    ),
                )
            if "violates PodSecurity" in message:
                return Problem(ProblemKind.POD_SECURITY, cut(message))
            return Problem(ProblemKind.CLUSTER, cut(message))
    return None


def _newest(pods: list[client.V1Pod]) -> client.V1Pod | None:
    live = [
        (p.metadata.creation_timestamp, p.metadata.name or "", p)
        for p in pods
        if p.metadata and p.metadata.deletion_timestamp is None
    ]
    if not live:
        return None
    # A Recreate rollout can leave an old pod beside the new one for a moment: the newest
    # tells what the space is becoming.
    return max(live, key=lambda t: (t[0] is not None, t[0], t[1]))[2]


def _rolling_out(deployment: client.V1Deployment | None) -> bool:
    """Whether the Deployment's controller has not yet replaced the pods of an older spec.

    Until then the one live pod may be the old one: reporting it as running would send the
    CLI to a pod that is about to go (and publish an address that is about to change).
    """
    if deployment is None or deployment.status is None:
        return False
    generation = deployment.metadata.generation if deployment.metadata else None
    seen = deployment.status.observed_generation
    if generation is not None and seen is not None and seen < generation:
        return True
    total, updated = deployment.status.replicas, deployment.status.updated_replicas
    return total is not None and total > (updated or 0)


def _pod_problems(pod: client.V1Pod) -> list[Problem]:
    problems = []
    status = pod.status or client.V1PodStatus()
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
            problems.append(
                Problem(ProblemKind.UNSCHEDULABLE, cut(condition.message or "no node fits"))
            )
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting is None:
            continue
        if waiting.reason in _IMAGE_PULL:
            image = container.image or "the image"
            problems.append(
                Problem(
                    ProblemKind.IMAGE_PULL,
                    cut(
                        f"{image} of container {container.name} cannot be pulled: "
                        f"{waiting.message or waiting.reason}"
                    ),
                )
            )
        elif waiting.reason == "CrashLoopBackOff":
            what = "the dev container" if container.name == DEV_CONTAINER else container.name
            problems.append(
                Problem(ProblemKind.CRASHING, cut(f"{what} keeps exiting: {waiting.message or ''}"))
            )
    return problems


def _ready(pod: client.V1Pod) -> bool:
    status = pod.status or client.V1PodStatus()
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])


def read_status(observed: Observed, *, stopped: bool, applied: bool = True) -> SpaceStatus:
    """The status of a space from what its namespace holds.

    `stopped` is the desired state (scaled to zero); `applied` says whether this pass applied
    every object. Quota usage is reported whatever the phase.
    """
    quota = observed.quota.status if observed.quota else None
    return replace(
        _phase(observed, stopped=stopped, applied=applied),
        quota_used=dict((quota.used if quota else None) or {}),
        quota_hard=dict((quota.hard if quota else None) or {}),
    )


def _phase(observed: Observed, *, stopped: bool, applied: bool) -> SpaceStatus:  # noqa: PLR0911 - one return per phase reads best
    ns = observed.namespace
    if ns is None or not applied:
        return SpaceStatus(Phase.PROVISIONING, "creating the space's objects")
    if ns.metadata and ns.metadata.deletion_timestamp is not None:
        return SpaceStatus(Phase.DELETING, "the namespace is being deleted")
    pod = _newest(observed.pods)
    if stopped:
        return SpaceStatus(
            Phase.STOPPED, "stopped; the workspace is kept" if pod is None else "stopping"
        )
    problems = []
    failure = _replica_failure(observed.deployment)
    if failure is not None:
        problems.append(failure)
    if pod is not None:
        problems.extend(_pod_problems(pod))
    if problems:
        return SpaceStatus(Phase.ERROR, problems[0].message, problems=tuple(problems))
    if pod is None:
        return SpaceStatus(Phase.STARTING, "waiting for the dev pod to be created")
    if _rolling_out(observed.deployment):
        return SpaceStatus(Phase.STARTING, "replacing the dev pod with one of the new spec")
    pod_ip = pod.status.pod_ip if pod.status else None
    if pod.status and pod.status.phase == "Running" and _ready(pod):
        return SpaceStatus(Phase.RUNNING, "running", pod_ip=pod_ip, ready=True)
    phase = pod.status.phase if pod.status else None
    return SpaceStatus(
        Phase.STARTING, f"the dev pod is {(phase or 'pending').lower()}", pod_ip=pod_ip
    )
