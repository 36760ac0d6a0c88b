"""What the reconciler must be allowed to do in the cluster, and asking the cluster whether it is.

`REQUIRED` is the reconciler's side of its least-privilege contract; the Helm chart's
`files/reconciler-rbac.yaml` is the cluster's side, and a test holds the two equal, so
`check-config --reconciler` checks exactly what the chart grants. The cluster answers
through SelfSubjectAccessReviews: the same authorizer that will judge every real request,
asked by the reconciler's own identity, so no permission to read RBAC objects is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kubernetes import client

from devspace_server.reconcile.cluster import REQUEST_TIMEOUT
from devspace_server.reconcile.errors import kube_errors
from devspace_server.reconcile.leader import LEASE_NAME


@dataclass(frozen=True)
class Rule:
    """Verbs on a resource; `in_lease_namespace` rules are granted by a Role there, the rest
    cluster-wide; `name` limits the rule to one object."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    name: str | None = None
    in_lease_namespace: bool = False


# Why each rule is needed is written beside it in the chart's file.
REQUIRED: tuple[Rule, ...] = (
    Rule("", "namespaces", ("get", "list", "watch", "create", "patch", "delete")),
    Rule("", "resourcequotas", ("get", "list", "create", "patch")),
    Rule("", "limitranges", ("list", "create", "patch")),
    Rule("", "persistentvolumeclaims", ("list", "create", "patch")),
    Rule("", "secrets", ("create", "patch")),
    Rule("", "pods", ("get", "list", "watch")),
    Rule("apps", "deployments", ("get", "list", "watch", "create", "patch")),
    Rule("networking.k8s.io", "networkpolicies", ("list", "create", "patch")),
    Rule("rbac.authorization.k8s.io", "rolebindings", ("list", "create", "patch")),
    Rule("rbac.authorization.k8s.io", "clusterroles", ("bind",), name="devspace-tenant"),
    Rule("coordination.k8s.io", "leases", ("create",), in_lease_namespace=True),
    Rule("coordination.k8s.io", "leases", ("get", "update"), LEASE_NAME, in_lease_namespace=True),
)


def denied(api: client.ApiClient, lease_namespace: str) -> Iterator[str]:
    """Yield, for each required permission the cluster refuses this identity, a line naming it
    (`create namespaces`, `update leases "devspace-reconciler" in namespace devspace`).

    Raises `ClusterError` when the cluster cannot be asked.
    """
    reviews = client.AuthorizationV1Api(api)
    for rule in REQUIRED:
        namespace = lease_namespace if rule.in_lease_namespace else None
        for verb in rule.verbs:
            attributes = client.V1ResourceAttributes(
                group=rule.group,
                resource=rule.resource,
                verb=verb,
                name=rule.name,
                namespace=namespace,
            )
            review = client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
            )
            with kube_errors(f"asking whether it may {verb} {rule.resource}"):
                answer = reviews.create_self_subject_access_review(
                    review, _request_timeout=REQUEST_TIMEOUT
                )
            if answer.status is None or not answer.status.allowed:
                yield _describe(rule, verb, namespace)


def _describe(rule: Rule, verb: str, namespace: str | None) -> str:
    resource = f"{rule.resource}.{rule.group}" if rule.group else rule.resource
    named = f' "{rule.name}"' if rule.name else ""
    where = f" in namespace {namespace}" if namespace else " (cluster-wide)"
    return f"{verb} {resource}{named}{where}"
