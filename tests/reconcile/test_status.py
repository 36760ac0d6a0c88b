"""read_status: observed objects into a phase and a reason a person can act on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from devspace_server.reconcile.cluster import Observed
from devspace_server.reconcile.status import Phase, ProblemKind, read_status

NAMESPACE = client.V1Namespace(metadata=client.V1ObjectMeta(name="ds-1"))


def pod(
    phase: str = "Pending",
    *,
    ready: bool = False,
    waiting: str | None = None,
    unschedulable: bool = False,
    ip: str | None = None,
    **meta: Any,
) -> client.V1Pod:
    conditions = [client.V1PodCondition(type="Ready", status="True" if ready else "False")]
    if unschedulable:
        conditions.append(
            client.V1PodCondition(
                type="PodScheduled",
                status="False",
                reason="Unschedulable",
                message="0/1 nodes are available: insufficient memory",
            )
        )
    statuses = []
    if waiting:
        statuses.append(
            client.V1ContainerStatus(
                name="dev",
                image="nosuch/image",
                image_id="",
                ready=False,
                restart_count=0,
                state=client.V1ContainerState(
                    waiting=client.V1ContainerStateWaiting(reason=waiting, message="not found")
                ),
            )
        )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(**{"name": "p", **meta}),
        status=client.V1PodStatus(
            phase=phase, pod_ip=ip, conditions=conditions, container_statuses=statuses or None
        ),
    )


def deployment(failure: str | None = None) -> client.V1Deployment:
    conditions = []
    if failure:
        conditions.append(
            client.V1DeploymentCondition(
                type="ReplicaFailure", status="True", reason="FailedCreate", message=failure
            )
        )
    return client.V1Deployment(
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(), template=client.V1PodTemplateSpec()
        ),
        status=client.V1DeploymentStatus(conditions=conditions or None),
    )


def quota(used: dict[str, str]) -> client.V1ResourceQuota:
    return client.V1ResourceQuota(
        status=client.V1ResourceQuotaStatus(hard={"requests.cpu": "2"}, used=used)
    )


def test_running_and_ready_reports_the_pod_ip_and_usage() -> None:
    observed = Observed(
        NAMESPACE,
        deployment(),
        [pod("Running", ready=True, ip="10.0.0.5")],
        quota({"requests.cpu": "110m"}),
    )
    status = read_status(observed, stopped=False)
    assert (status.phase, status.pod_ip, status.ready) == (Phase.RUNNING, "10.0.0.5", True)
    assert status.quota_used == {"requests.cpu": "110m"}
    assert status.quota_hard == {"requests.cpu": "2"}


@pytest.mark.parametrize(
    ("observed", "kind", "words"),
    [
        (
            Observed(NAMESPACE, deployment(), [pod(waiting="ImagePullBackOff")], None),
            ProblemKind.IMAGE_PULL,
            "nosuch/image",
        ),
        (
            Observed(NAMESPACE, deployment(), [pod(unschedulable=True)], None),
            ProblemKind.UNSCHEDULABLE,
            "insufficient memory",
        ),
        (
            Observed(
                NAMESPACE,
                deployment('pods "x" is forbidden: exceeded quota: space-quota, requested: ...'),
                [],
                None,
            ),
            ProblemKind.QUOTA_EXCEEDED,
            "raise the quota",
        ),
        (
            Observed(
                NAMESPACE,
                deployment('pods "x" is forbidden: violates PodSecurity "restricted:latest"'),
                [],
                None,
            ),
            ProblemKind.POD_SECURITY,
            "PodSecurity",
        ),
        (
            Observed(NAMESPACE, deployment(), [pod(waiting="CrashLoopBackOff")], None),
            ProblemKind.CRASHING,
            "keeps exiting",
        ),
    ],
)
def test_failures_a_person_can_act_on(observed: Observed, kind: ProblemKind, words: str) -> None:
    status = read_status(observed, stopped=False)
    assert status.phase == Phase.ERROR
    assert status.problems[0].kind == kind
    assert words in status.reason


def test_a_missing_default_serviceaccount_is_only_starting() -> None:
    failure = (
        'pods "x" is forbidden: error looking up service account: '
        'serviceaccount "default" not found'
    )
    status = read_status(Observed(NAMESPACE, deployment(failure), [], None), stopped=False)
    assert status.phase == Phase.STARTING


def test_phases_before_and_after_running() -> None:
    assert read_status(Observed(None, None, [], None), stopped=False).phase == Phase.PROVISIONING
    terminating = client.V1Namespace(
        metadata=client.V1ObjectMeta(name="ds-1", deletion_timestamp=datetime.now(UTC))
    )
    assert read_status(Observed(terminating, None, [], None), stopped=False).phase == Phase.DELETING
    assert read_status(Observed(NAMESPACE, deployment(), [], None), stopped=True).phase == (
        Phase.STOPPED
    )
    starting = read_status(Observed(NAMESPACE, deployment(), [pod()], None), stopped=False)
    assert (starting.phase, starting.reason) == (Phase.STARTING, "the dev pod is pending")


def test_the_newest_live_pod_speaks_for_the_space() -> None:
    old = pod(
        "Running",
        ready=True,
        name="old",
        creation_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        deletion_timestamp=datetime(2026, 1, 2, tzinfo=UTC),
    )
    new = pod(
        waiting="ErrImagePull", name="new", creation_timestamp=datetime(2026, 1, 2, tzinfo=UTC)
    )
    status = read_status(Observed(NAMESPACE, deployment(), [old, new], None), stopped=False)
    assert status.problems[0].kind == ProblemKind.IMAGE_PULL


@pytest.mark.parametrize(
    ("generation", "observed_generation", "replicas", "updated"),
    [(3, 2, 1, 1), (3, 3, 1, 0), (3, 3, 2, 1)],
)
def test_an_old_pod_is_not_running_while_the_new_spec_rolls_out(
    generation: int, observed_generation: int, replicas: int, updated: int
) -> None:
    rolling = deployment()
    rolling.metadata = client.V1ObjectMeta(generation=generation)
    rolling.status.observed_generation = observed_generation
    rolling.status.replicas, rolling.status.updated_replicas = replicas, updated
    old = pod("Running", ready=True, ip="10.0.0.5")
    status = read_status(Observed(NAMESPACE, rolling, [old], None), stopped=False)
    assert (status.phase, status.pod_ip, status.ready) == (Phase.STARTING, None, False)

    rolling.status.observed_generation = generation
    rolling.status.replicas = rolling.status.updated_replicas = 1
    status = read_status(Observed(NAMESPACE, rolling, [old], None), stopped=False)
    assert (status.phase, status.pod_ip) == (Phase.RUNNING, "10.0.0.5")
