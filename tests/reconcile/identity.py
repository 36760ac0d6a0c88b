"""The reconciler's least-privilege identity on the test cluster, and the sidecar image settings.

Plain functions, so that both pytest fixtures (tests/reconcile/conftest.py) and the whole-stack
bed (tests/stack.py, also used outside pytest) set the reconciler up the same way:

- ``grant_reconciler(kube, control_plane, namespace, path)``: the chart's own objects for the
  reconciler's identity (``helm template`` of templates/rbac.yaml and serviceaccounts.yaml for
  a release named after ``namespace``: the ServiceAccount ``reconciler_account(namespace)``,
  its roles and bindings, the tenant ClusterRole) applied in ``namespace``, and a kubeconfig
  at ``path`` that acts as that ServiceAccount; ``revoke_reconciler`` removes the cluster-wide
  role and binding.
- ``install_reconciler(plane, namespace, path)``: the same on a fresh control plane of one's
  own, making ``namespace`` first.
- ``sidecar_settings()``: ClusterSettings fields for the sidecar image the test node runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from helm.chart import BASE, Helm, build_helm, merged
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient

from testbed import images
from testbed.cluster import ControlPlane, ExistingCluster


def reconciler_account(namespace: str) -> str:
    """The name of the reconciler's ServiceAccount that `grant_reconciler` made in `namespace`."""
    return f"{namespace}-reconciler"


def chart_identity(namespace: str) -> list[dict[str, Any]]:
    """What the Helm chart makes for the reconciler's identity, rendered for a release named
    after `namespace` and installed there: its ServiceAccount, its ClusterRole and leader-
    election Role with their bindings, and the tenant ClusterRole."""
    with tempfile.TemporaryDirectory(prefix="devspace-helm-") as home:
        docs = Helm(build_helm(), Path(home)).template(
            merged(BASE, {"fullnameOverride": namespace}),
            namespace=namespace,
            release=namespace,
            only=("templates/rbac.yaml", "templates/serviceaccounts.yaml"),
        )
    account = reconciler_account(namespace)
    return [d for d in docs if d["kind"] != "ServiceAccount" or d["metadata"]["name"] == account]


def grant_reconciler(
    kube: client.ApiClient,
    control_plane: ControlPlane | ExistingCluster,
    namespace: str,
    path: Path,
) -> Path:
    """Apply the chart's objects for the reconciler's identity (`chart_identity`) in
    `namespace` (which must exist), and write a kubeconfig acting as its ServiceAccount to
    `path`; returns `path`. The tests then run the reconciler with exactly the chart's RBAC."""
    dynamic = DynamicClient(kube)
    for document in chart_identity(namespace):
        resource = dynamic.resources.get(api_version=document["apiVersion"], kind=document["kind"])
        meta = document["metadata"]
        dynamic.server_side_apply(
            resource,
            body=document,
            name=meta["name"],
            namespace=meta.get("namespace", namespace) if resource.namespaced else None,
            field_manager="devspace-tests",
            force_conflicts=True,
        )
    return control_plane.serviceaccount_kubeconfig(namespace, reconciler_account(namespace), path)


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
    """Remove the cluster-wide role and binding `grant_reconciler` made (the rest goes with
    `namespace`; the tenant ClusterRole stays, shared by every installation)."""
    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.delete_cluster_role_binding(reconciler_account(namespace))
    rbac.delete_cluster_role(reconciler_account(namespace))


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
