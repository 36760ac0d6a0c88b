"""The reconciler's least-privilege identity on the test cluster, and the sidecar image settings.

Plain functions, so that both pytest fixtures (tests/reconcile/conftest.py) and the whole-stack
bed (tests/stack.py, also used outside pytest) set the reconciler up the same way:

- ``grant_reconciler(kube, control_plane, namespace, path)``: the ServiceAccount
  ``devspace-reconciler`` in ``namespace`` bound to exactly the chart's RBAC
  (``helm/devspace/files/reconciler-rbac.yaml``, with the tenant ClusterRole created), and a
  kubeconfig at ``path`` that acts as it; ``revoke_reconciler`` removes the cluster-wide binding.
- ``install_reconciler(plane, namespace, path)``: the same on a fresh control plane of one's
  own, making ``namespace`` first.
- ``sidecar_settings()``: ClusterSettings fields for the sidecar image the test node runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from reconcile.chartfiles import RECONCILER, load_documents
from testbed import images
from testbed.cluster import ControlPlane, ExistingCluster


def create_or_replace(kube: client.ApiClient, document: dict[str, Any], namespace: str) -> None:
    """Create an RBAC object from a YAML document (replacing a stale one of a former run)."""
    rbac = client.RbacAuthorizationV1Api(kube)
    name = document["metadata"]["name"]
    kinds = {
        "ClusterRole": (rbac.create_cluster_role, rbac.replace_cluster_role, False),
        "Role": (rbac.create_namespaced_role, rbac.replace_namespaced_role, True),
    }
    create, replace, namespaced = kinds[document["kind"]]
    args = (namespace,) if namespaced else ()
    try:
        create(*args, document)
    except ApiException as error:
        if error.status != 409:
            raise
        replace(name, *args, document)


def grant_reconciler(
    kube: client.ApiClient,
    control_plane: ControlPlane | ExistingCluster,
    namespace: str,
    path: Path,
) -> Path:
    """Make the reconciler's ServiceAccount in `namespace` (which must exist) with the chart's
    RBAC, and write a kubeconfig acting as it to `path`; returns `path`."""
    core = client.CoreV1Api(kube)
    rbac = client.RbacAuthorizationV1Api(kube)
    for document in load_documents("tenant-clusterrole.yaml"):
        create_or_replace(kube, document, namespace)
    documents = load_documents("reconciler-rbac.yaml")
    for document in documents:
        create_or_replace(kube, document, namespace)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=RECONCILER))
    )
    subject = client.RbacV1Subject(kind="ServiceAccount", name=RECONCILER, namespace=namespace)
    for document in documents:
        ref = client.V1RoleRef(
            api_group="rbac.authorization.k8s.io",
            kind=document["kind"],
            name=document["metadata"]["name"],
        )
        meta = client.V1ObjectMeta(name=f"{document['metadata']['name']}-{namespace}")
        if document["kind"] == "ClusterRole":
            rbac.create_cluster_role_binding(
                client.V1ClusterRoleBinding(metadata=meta, role_ref=ref, subjects=[subject])
            )
        else:
            rbac.create_namespaced_role_binding(
                namespace, client.V1RoleBinding(metadata=meta, role_ref=ref, subjects=[subject])
            )
    return control_plane.serviceaccount_kubeconfig(namespace, RECONCILER, path)


def install_reconciler(plane: ControlPlane, namespace: str, path: Path) -> Path:
    """On a fresh control plane of one's own: create `namespace`, then `grant_reconciler` in
    it; returns the kubeconfig's path (for bench/provision.py and the chaos tests)."""
    kube = config.new_client_from_config(str(plane.admin_kubeconfig))
    try:
        client.CoreV1Api(kube).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
        return grant_reconciler(kube, plane, namespace, path)
    finally:
        kube.close()


def revoke_reconciler(kube: client.ApiClient, namespace: str) -> None:
    """Remove the cluster-wide binding `grant_reconciler` made (the rest goes with `namespace`)."""
    client.RbacAuthorizationV1Api(kube).delete_cluster_role_binding(
        f"devspace-reconciler-{namespace}"
    )


def sidecar_settings() -> dict[str, Any]:
    """ClusterSettings fields for the sidecar: ``devspace.test/sshd`` once the test node can run
    it, else ``devspace.test/shell`` serving TCP on 2222 (so the readiness probe still means
    something)."""
    row = images.resolve({"image": "devspace.test/sshd"})
    if row is not None and row.unavailable is None:
        return {"sidecar_image": "devspace.test/sshd"}
    return {
        "sidecar_image": "devspace.test/shell",
        "sidecar_command": ("/usr/bin/python3", "-m", "http.server", "2222"),
        "sidecar_args": (),
    }
