"""The test bed's control plane behaves as a real cluster does in what devspace relies on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from testbed.cluster import ControlPlane, ExistingCluster
from testbed.eventually import eventually

pytestmark = pytest.mark.kube


def default_serviceaccount(core: client.CoreV1Api, namespace: str) -> bool:
    """Pods are admitted only once kube-controller-manager has made this account."""
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def pod(name: str, **container: Any) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="devspace.test/shell", **container)]
        ),
    )


def test_deleted_namespace_finishes_terminating(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="doomed")))
    core.create_namespaced_config_map(
        "doomed", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="data"), data={"a": "1"})
    )
    core.delete_namespace("doomed")
    assert core.read_namespace("doomed").status.phase == "Terminating"

    def gone() -> bool:
        try:
            core.read_namespace("doomed")
        except ApiException as error:
            return error.status == 404
        return False

    eventually(gone, what="namespace 'doomed' to finish terminating")


def test_resource_quota_gets_status_and_refuses_pods_over_it(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="quota"),
            spec=client.V1ResourceQuotaSpec(hard={"pods": "1", "requests.cpu": "500m"}),
        ),
    )
    status = eventually(
        lambda: core.read_namespaced_resource_quota("quota", namespace).status.used,
        what="the quota controller to compute usage",
    )
    assert status == {"pods": "0", "requests.cpu": "0"}
    eventually(lambda: default_serviceaccount(core, namespace), what="the default ServiceAccount")

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(
            namespace,
            pod("greedy", resources=client.V1ResourceRequirements(requests={"cpu": "1"})),
        )
    assert refused.value.status == 403
    assert "exceeded quota" in refused.value.body

    core.create_namespaced_pod(
        namespace, pod("modest", resources=client.V1ResourceRequirements(requests={"cpu": "100m"}))
    )
    eventually(
        lambda: (
            core.read_namespaced_resource_quota("quota", namespace).status.used
            == {"pods": "1", "requests.cpu": "100m"}
        ),
        what="the quota to count the admitted pod",
    )


def test_pod_security_restricted_refuses_a_privileged_pod(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    eventually(lambda: default_serviceaccount(core, namespace), what="the default ServiceAccount")
    privileged = pod("root", security_context=client.V1SecurityContext(privileged=True))
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, privileged, dry_run="All")
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest": privileged' in message

    # The same namespace admits a pod that meets the restricted profile.
    compliant = pod(
        "compliant",
        security_context=client.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=1000,
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
    )
    core.create_namespaced_pod(namespace, compliant, dry_run="All")


def test_deployment_yields_a_replicaset_and_a_pod(kube: client.ApiClient, namespace: str) -> None:
    labels = {"app": "web"}
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[
                            client.V1Container(name="web", image="devspace.test/http-server")
                        ]
                    ),
                ),
            ),
        ),
    )
    replicasets = eventually(
        lambda: client.AppsV1Api(kube).list_namespaced_replica_set(namespace).items,
        what="the deployment controller to make a ReplicaSet",
    )
    assert [rs.metadata.owner_references[0].name for rs in replicasets] == ["web"]
    pods = eventually(
        lambda: client.CoreV1Api(kube).list_namespaced_pod(namespace).items,
        what="the replicaset controller to make a Pod",
    )
    assert [p.metadata.owner_references[0].name for p in pods] == [replicasets[0].metadata.name]


def test_serviceaccount_kubeconfig_has_exactly_the_granted_rights(
    kube: client.ApiClient,
    namespace: str,
    control_plane: ControlPlane | ExistingCluster,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot"))
    )
    kubeconfig = control_plane.serviceaccount_kubeconfig(namespace, "robot", tmp_path / "robot")
    robot = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))

    with pytest.raises(ApiException) as refused:
        robot.list_namespaced_config_map(namespace)
    assert refused.value.status == 403

    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-configmaps"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="robot-reads"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="robot", namespace=namespace)
            ],
        ),
    )
    names = eventually(
        lambda: [c.metadata.name for c in robot.list_namespaced_config_map(namespace).items],
        what="the RoleBinding to take effect",
        ignore=(ApiException,),
    )
    assert "kube-root-ca.crt" in names
    with pytest.raises(ApiException) as still_refused:
        robot.list_namespaced_secret(namespace)
    assert still_refused.value.status == 403
