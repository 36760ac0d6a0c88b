"""Pod Security, tenant isolation and the reconciler's own least privilege, on the real
apiserver's admission and RBAC authorizer."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devspace_server.kube.meta import namespace_name
from devspace_server.kube.rbac import tenant_user
from devspace_server.kube.spec import Port, Resources, SpaceSpec
from devspace_server.kube.workload import make_pod_spec
from devspace_server.reconcile.step import Reconciler
from devspace_server.reconcile.store import MemorySpaceStore
from reconcile.chartfiles import load_documents
from reconcile.identity import reconciler_account

pytestmark = [pytest.mark.kube]

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


@pytest.fixture
def tenant_namespace(
    reconciler: Reconciler, store: MemorySpaceStore, make_spec: Callable[..., SpaceSpec]
) -> tuple[SpaceSpec, str]:
    # Stopped, so that its own pod does not take the quota the dry-run pods are checked against.
    spec = make_spec(stopped=True)
    store.put(spec)
    reconciler.reconcile(spec.space_id)
    return spec, namespace_name(spec.space_id, reconciler.settings)


def dry_run_pod(kube: client.ApiClient, namespace: str, spec: client.V1PodSpec) -> None:
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="probe"), spec=spec)
    client.CoreV1Api(kube).create_namespaced_pod(namespace, pod, dry_run="All")


SPEC_VARIANTS: list[dict[str, Any]] = [
    {},
    {"command": (), "args": ()},
    {"env": (("A", "1"),), "ports": (Port("web", 8080), Port("db", 5432))},
    {"resources": Resources("1", "1Gi", "2", "2Gi")},
    {"stopped": True},
]


@pytest.mark.parametrize("changes", SPEC_VARIANTS)
def test_every_dev_pod_passes_pod_security_restricted(
    kube: client.ApiClient,
    tenant_namespace: tuple[SpaceSpec, str],
    reconciler: Reconciler,
    make_spec: Callable[..., SpaceSpec],
    changes: dict[str, Any],
) -> None:
    _, namespace = tenant_namespace
    dry_run_pod(kube, namespace, make_pod_spec(make_spec(**changes), reconciler.settings))


def privileged(spec: client.V1PodSpec) -> None:
    spec.containers[0].security_context.privileged = True
    spec.containers[0].security_context.allow_privilege_escalation = True


def root(spec: client.V1PodSpec) -> None:
    spec.security_context.run_as_non_root = False
    spec.security_context.run_as_user = 0
    spec.containers[0].security_context.run_as_non_root = None
    spec.containers[0].security_context.run_as_user = 0


def host_path(spec: client.V1PodSpec) -> None:
    spec.volumes.append(
        client.V1Volume(name="host", host_path=client.V1HostPathVolumeSource(path="/"))
    )


def host_network(spec: client.V1PodSpec) -> None:
    spec.host_network = True


def capability(spec: client.V1PodSpec) -> None:
    spec.containers[1].security_context.capabilities.add = ["NET_ADMIN"]


@pytest.mark.parametrize("loosen", [privileged, root, host_path, host_network, capability])
def test_a_pod_loosened_past_restricted_is_refused_in_a_tenant_namespace(
    kube: client.ApiClient,
    tenant_namespace: tuple[SpaceSpec, str],
    reconciler: Reconciler,
    loosen: Callable[[client.V1PodSpec], None],
) -> None:
    spec, namespace = tenant_namespace
    pod = make_pod_spec(spec, reconciler.settings)
    loosen(pod)
    with pytest.raises(ApiException) as refused:
        dry_run_pod(kube, namespace, pod)
    assert refused.value.status == 403
    assert "violates PodSecurity" in refused.value.body


def allowed(
    kube: client.ApiClient, user: str, namespace: str, action: tuple[str, str, str]
) -> bool:
    """What the apiserver's authorizer says about `user` doing `action`: (verb, API group
    ("" for core), resource such as `pods` or `pods/exec`)."""
    verb, group, resource = action
    name, _, subresource = resource.partition("/")
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            groups=["system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace,
                verb=verb,
                group=group,
                resource=name,
                subresource=subresource or None,
            ),
        )
    )
    result = client.AuthorizationV1Api(kube).create_subject_access_review(review)
    return bool(result.status.allowed)


def tenant_grants() -> list[tuple[str, str, str]]:
    """(verb, group, resource) for every rule of the tenant ClusterRole."""
    (role,) = load_documents("tenant-clusterrole.yaml")
    return [
        grant
        for rule in role["rules"]
        for grant in itertools.product(rule["verbs"], rule["apiGroups"], rule["resources"])
    ]


def test_a_tenant_can_do_nothing_in_another_tenants_namespace(
    kube: client.ApiClient,
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
) -> None:
    a, b = make_spec(), make_spec()
    for spec in (a, b):
        store.put(spec)
        reconciler.reconcile(spec.space_id)
    user_a = tenant_user(a.owner_id)
    ns_a = namespace_name(a.space_id, reconciler.settings)
    ns_b = namespace_name(b.space_id, reconciler.settings)
    grants = tenant_grants()
    assert grants, "the tenant role grants nothing: the checks below would prove nothing"
    # The positive control: in their own namespace the review says yes, so a "no" below is
    # the authorizer's answer and not a malformed review.
    for verb, group, resource in grants:
        assert allowed(kube, user_a, ns_a, (verb, group, resource)), (verb, group, resource)
    resources = sorted({(group, resource) for _, group, resource in grants})
    for verb, (group, resource) in itertools.product(
        ("get", "list", "watch", *WRITE_VERBS), resources
    ):
        assert not allowed(kube, user_a, ns_b, (verb, group, resource)), (verb, resource, ns_b)
        assert not allowed(kube, user_a, "", (verb, group, resource)), (verb, resource, "all")


@pytest.mark.parametrize(
    ("verb", "group", "resource"),
    [
        ("get", "", "secrets"),
        ("create", "", "pods/exec"),
        ("create", "", "pods/portforward"),
        ("create", "", "pods"),
        ("patch", "apps", "deployments"),
        ("delete", "", "resourcequotas"),
        ("delete", "networking.k8s.io", "networkpolicies"),
        ("create", "rbac.authorization.k8s.io", "rolebindings"),
    ],
)
def test_a_tenant_cannot_undo_its_own_isolation(
    kube: client.ApiClient,
    tenant_namespace: tuple[SpaceSpec, str],
    verb: str,
    group: str,
    resource: str,
) -> None:
    spec, namespace = tenant_namespace
    assert not allowed(kube, tenant_user(spec.owner_id), namespace, (verb, group, resource))


def service_account(namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{reconciler_account(namespace)}"


@pytest.mark.parametrize(
    ("verb", "group", "resource"),
    [
        ("list", "", "secrets"),
        ("get", "", "secrets"),
        ("escalate", "rbac.authorization.k8s.io", "clusterroles"),
        ("bind", "rbac.authorization.k8s.io", "clusterroles"),
        ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
        ("impersonate", "", "users"),
        ("create", "", "pods"),
        ("create", "", "pods/exec"),
        ("update", "", "namespaces"),
        ("delete", "apps", "deployments"),
    ],
)
def test_the_reconciler_holds_no_more_than_it_needs(
    kube: client.ApiClient, reconciler_namespace: str, verb: str, group: str, resource: str
) -> None:
    user = (
        f"system:serviceaccount:{reconciler_namespace}:{reconciler_account(reconciler_namespace)}"
    )
    assert not allowed(kube, user, "default", (verb, group, resource))


def test_the_reconciler_may_bind_only_the_tenant_role(
    kube: client.ApiClient, reconciler_namespace: str
) -> None:
    user = (
        f"system:serviceaccount:{reconciler_namespace}:{reconciler_account(reconciler_namespace)}"
    )
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            resource_attributes=client.V1ResourceAttributes(
                verb="bind",
                group="rbac.authorization.k8s.io",
                resource="clusterroles",
                name="devspace-tenant",
            ),
        )
    )
    api = client.AuthorizationV1Api(kube)
    assert api.create_subject_access_review(review).status.allowed
    review.spec.resource_attributes.name = "cluster-admin"
    assert not api.create_subject_access_review(review).status.allowed
