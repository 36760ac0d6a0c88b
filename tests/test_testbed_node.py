"""The test node runs pods as a kubelet would, in what devspace's tests rely on."""

from __future__ import annotations

import http.client
import ipaddress
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from testbed.cluster import ControlPlane
from testbed.eventually import eventually
from testbed.node import TestNode
from testbed.pods import latest_attempt

pytestmark = [pytest.mark.kube, pytest.mark.node]

Manifest = dict[str, Any]


@pytest.fixture
def core(kube: client.ApiClient, namespace: str, test_node: TestNode) -> client.CoreV1Api:
    """The core API, once `namespace` admits pods (it has its default ServiceAccount) and
    the test node runs them."""
    api = client.CoreV1Api(kube)
    eventually(
        lambda: api.read_namespaced_service_account("default", namespace),
        what="the default ServiceAccount",
        ignore=(ApiException,),
    )
    return api


def pod(name: str, *containers: Manifest, **spec: Any) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": list(containers), **spec},
    }


def shell(script: str, name: str = "main", **fields: Any) -> Manifest:
    return {"name": name, "image": "devspace.test/shell", "command": ["sh", "-c", script], **fields}


def http_server(port: int = 8080, name: str = "web", **fields: Any) -> Manifest:
    return {
        "name": name,
        "image": "devspace.test/http-server",
        "ports": [{"containerPort": port}],
        **fields,
    }


def until_pod(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    check: Callable[[client.V1Pod], bool],
    what: str,
    *,
    timeout: int = 30,
) -> client.V1Pod:
    """The pod, as soon as `check` holds for it: read once, then follow a watch."""
    current = core.read_namespaced_pod(name, namespace)
    if check(current):
        return current
    stream = watch.Watch().stream(
        core.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        resource_version=current.metadata.resource_version,
        timeout_seconds=timeout,
    )
    for event in stream:
        if event["type"] != "DELETED" and check(event["object"]):
            return event["object"]
    pytest.fail(f"pod {name}: timed out after {timeout} s waiting for {what}")


def running(pod: client.V1Pod) -> bool:
    return pod.status.phase == "Running" and bool(pod.status.pod_ip)


def gone(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except ApiException as error:
        return error.status == 404
    return False


def http_get(host: str, port: int, path: str = "/") -> str:
    """GET from the host; http.client, so no proxy setting can send it elsewhere."""
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.read().decode()
    finally:
        connection.close()


def in_pod(
    node: TestNode, namespace: str, name: str, script: str, container: str | None = None
) -> str:
    result = node.exec(namespace, name, ["sh", "-c", script], container=container)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_deployment_pod_runs_on_the_test_node_with_a_pod_ip(
    kube: client.ApiClient, core: client.CoreV1Api, namespace: str, test_node: TestNode
) -> None:
    labels = {"app": "web"}
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": pod("x", http_server())["spec"],
                },
            },
        },
    )
    pods = eventually(
        lambda: core.list_namespaced_pod(namespace).items, what="the Deployment's Pod"
    )
    assert pods[0].metadata.owner_references[0].kind == "ReplicaSet"
    web = until_pod(core, namespace, pods[0].metadata.name, running, "Running")

    assert web.spec.node_name == test_node.name
    assert ipaddress.ip_address(web.status.pod_ip) in ipaddress.ip_network(test_node.subnet)
    assert web.status.host_ip == test_node.gateway
    [status] = web.status.container_statuses
    assert status.state.running.started_at is not None
    assert status.restart_count == 0
    conditions = {c.type: c.status for c in web.status.conditions}
    assert conditions == {
        "PodScheduled": "True",
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    node = core.read_node(test_node.name)
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"


def test_every_pod_has_its_own_localhost(
    core: client.CoreV1Api, namespace: str, test_node: TestNode
) -> None:
    # Both pods serve on 8080, which only works if each has its own network namespace; an
    # init container writes the pod's name for its server to answer with.
    name_file = {
        "name": "name",
        "image": "devspace.test/shell",
        "command": ["sh", "-c", "echo $POD_NAME > /srv/name"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "srv", "mountPath": "/srv"}],
    }
    served = {"workingDir": "/srv", "volumeMounts": [{"name": "srv", "mountPath": "/srv"}]}
    volumes = [{"name": "srv", "emptyDir": {}}]
    # Pod a also has a server on its loopback only, in a second container.
    loopback_only = shell(
        "exec python3 -m http.server 9090 --bind 127.0.0.1 --directory /srv",
        name="private",
        volumeMounts=[{"name": "srv", "mountPath": "/srv"}],
    )
    core.create_namespaced_pod(
        namespace,
        pod("a", http_server(**served), loopback_only, initContainers=[name_file], volumes=volumes),
    )
    core.create_namespaced_pod(
        namespace, pod("b", http_server(**served), initContainers=[name_file], volumes=volumes)
    )
    a = until_pod(core, namespace, "a", running, "Running")
    b = until_pod(core, namespace, "b", running, "Running")
    assert a.status.pod_ip != b.status.pod_ip

    # The host reaches each pod's server by its IP, through the test bridge.
    for pod_ip, name in ((a.status.pod_ip, "a"), (b.status.pod_ip, "b")):
        answer = eventually(
            lambda ip=pod_ip: http_get(ip, 8080, "/name"), what="the server", ignore=(OSError,)
        )
        assert answer == f"{name}\n"

    fetch = (
        "python3 -c 'import sys, urllib.request as u; "
        "sys.stdout.write(u.urlopen(sys.argv[1]).read().decode())'"
    )
    # Each pod's 127.0.0.1:8080 is its own server.
    assert in_pod(test_node, namespace, "b", f"{fetch} http://127.0.0.1:8080/name") == "b\n"
    # a's loopback-only server answers a's other container, and nobody outside a.
    eventually(
        lambda: in_pod(test_node, namespace, "a", f"{fetch} http://127.0.0.1:9090/name", "web"),
        what="a's loopback server",
        ignore=(AssertionError,),
    )
    refused = test_node.exec(namespace, "b", ["sh", "-c", f"{fetch} http://127.0.0.1:9090/name"])
    assert refused.returncode != 0
    assert "Connection refused" in refused.stderr
    with pytest.raises(ConnectionRefusedError):
        http_get(a.status.pod_ip, 9090)


def test_container_runs_as_the_requested_user(
    core: client.CoreV1Api, namespace: str, test_node: TestNode
) -> None:
    core.create_namespaced_pod(
        namespace,
        pod(
            "user",
            shell(
                "touch /data/made-here; sleep infinity",
                volumeMounts=[{"name": "data", "mountPath": "/data"}],
                securityContext={"allowPrivilegeEscalation": False},
            ),
            securityContext={
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "fsGroup": 2000,
                "runAsNonRoot": True,
            },
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
    )
    until_pod(core, namespace, "user", running, "Running")
    assert (
        in_pod(test_node, namespace, "user", "id -u; id -g; id -G") == "65532\n65532\n65532 2000\n"
    )
    # The process itself, seen from the host, has those ids too.
    pid = int((latest_attempt(test_node.directory, namespace, "user", None) / "pid").read_text())
    status = Path(f"/proc/{pid}/status").read_text()
    assert "Uid:\t65532\t65532\t65532\t65532" in status
    assert "NoNewPrivs:\t1" in status
    listing = eventually(
        lambda: in_pod(test_node, namespace, "user", "stat -c '%u %g' /data/made-here"),
        what="the container to write to its volume",
        ignore=(AssertionError,),
    )
    assert listing == "65532 2000\n"  # fsGroup: the volume's setgid directory gives its group


def test_run_as_non_root_refuses_a_root_container(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(
        namespace, pod("root", shell("sleep infinity"), securityContext={"runAsNonRoot": True})
    )
    refused = until_pod(
        core,
        namespace,
        "root",
        lambda p: bool(
            p.status.container_statuses
            and p.status.container_statuses[0].state.waiting
            and p.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError"
        ),
        "CreateContainerConfigError",
    )
    assert "runAsNonRoot" in refused.status.container_statuses[0].state.waiting.message
    assert refused.status.phase == "Pending"


def test_exited_container_is_reported_with_its_exit_code(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("once", shell("exit 3"), restartPolicy="Never"))
    failed = until_pod(core, namespace, "once", lambda p: p.status.phase == "Failed", "Failed")
    terminated = failed.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert terminated.finished_at is not None

    core.create_namespaced_pod(namespace, pod("done", shell("true"), restartPolicy="OnFailure"))
    done = until_pod(core, namespace, "done", lambda p: p.status.phase == "Succeeded", "Succeeded")
    assert done.status.container_statuses[0].state.terminated.reason == "Completed"


def test_exited_container_is_restarted_under_restart_policy_always(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, pod("again", shell("exit 7")))

    def restarted(p: client.V1Pod) -> bool:
        statuses = p.status.container_statuses or []
        return bool(statuses and statuses[0].restart_count >= 2)

    again = until_pod(core, namespace, "again", restarted, "two restarts")
    status = again.status.container_statuses[0]
    assert status.last_state.terminated.exit_code == 7
    assert again.status.phase == "Running"  # kubelet's phase for a crash-looping pod


def test_persistent_volume_claim_outlives_the_pod(
    core: client.CoreV1Api, namespace: str, test_node: TestNode
) -> None:
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "work"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    claim = eventually(
        lambda: (
            (c := core.read_namespaced_persistent_volume_claim("work", namespace)).status.phase
            == "Bound"
            and c
        ),
        what="kube-controller-manager to bind the claim to the provisioned volume",
    )
    assert claim.spec.storage_class_name == "testbed-hostpath"  # the default class
    volume = core.read_persistent_volume(claim.spec.volume_name)
    assert volume.status.phase == "Bound"
    assert volume.spec.claim_ref.uid == claim.metadata.uid

    mount = {"volumeMounts": [{"name": "work", "mountPath": "/workspace"}]}
    claimed = [{"name": "work", "persistentVolumeClaim": {"claimName": "work"}}]
    core.create_namespaced_pod(
        namespace,
        pod(
            "writer",
            shell("echo kept > /workspace/file", **mount),
            volumes=claimed,
            restartPolicy="Never",
        ),
    )
    until_pod(core, namespace, "writer", lambda p: p.status.phase == "Succeeded", "Succeeded")
    core.delete_namespaced_pod("writer", namespace)
    eventually(lambda: gone(core, namespace, "writer"), what="the writer pod to go")

    core.create_namespaced_pod(
        namespace,
        pod(
            "reader", shell("cat /workspace/file", **mount), volumes=claimed, restartPolicy="Never"
        ),
    )
    until_pod(core, namespace, "reader", lambda p: p.status.phase == "Succeeded", "Succeeded")
    assert test_node.log(namespace, "reader") == "kept\n"


def test_deleting_a_pod_stops_its_processes_and_removes_its_netns(
    core: client.CoreV1Api, namespace: str, test_node: TestNode
) -> None:
    # sh as PID 1 of its own PID namespace ignores SIGTERM: this pod needs the SIGKILL.
    scratch = {"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}
    core.create_namespaced_pod(
        namespace,
        pod(
            "doomed",
            shell("sleep infinity", **scratch),
            http_server(),
            terminationGracePeriodSeconds=1,
            volumes=[{"name": "scratch", "emptyDir": {}}],
        ),
    )
    doomed = until_pod(core, namespace, "doomed", running, "Running")
    netns = test_node.netns_name(doomed.metadata.uid)
    # The sandbox (2), a launcher per container (2), sh, sleep and the server.
    pids = eventually(
        lambda: len(found := netns_pids(netns)) >= 7 and found, what="the pod's processes"
    )
    volumes = latest_attempt(test_node.directory, namespace, "doomed", None).parents[2] / "volumes"
    assert (volumes / "scratch").is_dir()

    core.delete_namespaced_pod("doomed", namespace)
    eventually(lambda: gone(core, namespace, "doomed"), what="the pod to be deleted", timeout=10)
    assert netns_identity(netns) is None
    assert [pid for pid in pids if alive(pid)] == []
    assert not volumes.exists()  # the emptyDir went with the pod


def test_a_pod_that_fits_no_node_stays_pending(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(
        namespace, pod("picky", shell("true"), nodeSelector={"disktype": "ssd"})
    )

    def unschedulable(p: client.V1Pod) -> bool:
        return any(
            c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            for c in p.status.conditions or []
        )

    picky = until_pod(core, namespace, "picky", unschedulable, "PodScheduled False")
    assert picky.spec.node_name is None
    assert picky.status.phase == "Pending"


def test_namespace_with_a_running_pod_finishes_terminating(
    kube: client.ApiClient, test_node: TestNode
) -> None:
    core = client.CoreV1Api(kube)
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    eventually(
        lambda: core.read_namespaced_service_account("default", name),
        what="the default ServiceAccount",
        ignore=(ApiException,),
    )
    core.create_namespaced_pod(name, pod("web", http_server()))
    until_pod(core, name, "web", running, "Running")

    core.delete_namespace(name)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(namespace_gone, what=f"namespace {name} to finish terminating", timeout=60)


def test_unknown_image_is_reported_as_not_pullable(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(
        namespace, pod("nowhere", {"name": "main", "image": "registry.invalid/nothing:1"})
    )

    def pull_failed(p: client.V1Pod) -> bool:
        statuses = p.status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting is not None and waiting.reason in ("ErrImagePull", "ImagePullBackOff")

    failed = until_pod(core, namespace, "nowhere", pull_failed, "ErrImagePull")
    assert "registry.invalid/nothing:1" in failed.status.container_statuses[0].state.waiting.message
    assert failed.status.phase == "Pending"


def test_secret_config_map_and_downward_values_reach_the_container(
    core: client.CoreV1Api, namespace: str, test_node: TestNode
) -> None:
    core.create_namespaced_secret(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keys"},
            "stringData": {"token": "s3cret", "other": "x"},
        },
    )
    core.create_namespaced_config_map(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"greeting": "hello"},
        },
    )
    container = shell(
        "sleep infinity",
        env=[
            {
                "name": "GREETING",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}},
            },
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "token"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "MESSAGE", "value": "$(GREETING) from $(POD_IP)"},
        ],
        volumeMounts=[{"name": "keys", "mountPath": "/etc/devspace/keys", "readOnly": True}],
        workingDir="/etc/devspace/keys",
    )
    core.create_namespaced_pod(
        namespace,
        pod(
            "configured",
            container,
            volumes=[
                {
                    "name": "keys",
                    "secret": {
                        "secretName": "keys",
                        "items": [{"key": "token", "path": "token", "mode": 0o400}],
                    },
                }
            ],
        ),
    )
    configured = until_pod(core, namespace, "configured", running, "Running")
    output = in_pod(
        test_node,
        namespace,
        "configured",
        'echo "$MESSAGE|$TOKEN"; pwd; ls; cat token; echo; stat -L -c %a token; touch x 2>&1 || :',
    )
    lines = output.splitlines()
    assert lines[0] == f"hello from {configured.status.pod_ip}|s3cret"
    assert lines[1:5] == ["/etc/devspace/keys", "token", "s3cret", "400"]
    assert "Read-only file system" in lines[5]
    # The host's /etc is untouched by the mount point made for the container.
    assert not Path("/etc/devspace/keys").exists()

    # A changed Secret reaches the mounted file, as kubelet refreshes it (the variable stays).
    core.patch_namespaced_secret("keys", namespace, {"stringData": {"token": "rotated"}})
    eventually(
        lambda: in_pod(test_node, namespace, "configured", "cat token") == "rotated",
        what="the mounted Secret to be refreshed",
        timeout=10,
    )


def test_each_container_has_its_own_tmp_and_may_have_a_read_only_root(
    core: client.CoreV1Api, namespace: str, test_node: TestNode
) -> None:
    marker = f"testbed-{uuid.uuid4().hex}"
    shared = {"volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}
    core.create_namespaced_pod(
        namespace,
        pod(
            "rooted",
            shell(f"touch /tmp/{marker}; exec sleep infinity", name="writer", **shared),
            shell(
                "exec sleep infinity",
                name="locked",
                securityContext={"readOnlyRootFilesystem": True},
                **shared,
            ),
            volumes=[{"name": "shared", "emptyDir": {}}],
        ),
    )
    until_pod(core, namespace, "rooted", running, "Running")
    eventually(
        lambda: in_pod(test_node, namespace, "rooted", f"ls /tmp/{marker}", "writer"),
        what="the writer's file",
        ignore=(AssertionError,),
    )
    assert not Path(f"/tmp/{marker}").exists()
    locked = "ls /tmp; touch /tmp/x /etc/x 2>&1; touch /shared/x && echo volume writable"
    output = in_pod(test_node, namespace, "rooted", f"{locked}; true", "locked")
    assert marker not in output
    assert output.count("Read-only file system") == 2
    assert output.endswith("volume writable\n")


def test_probes_decide_readiness_and_restarts(core: client.CoreV1Api, namespace: str) -> None:
    tcp = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    core.create_namespaced_pod(namespace, pod("served", http_server(readinessProbe=tcp)))
    # Healthy for a moment, then its exec liveness probe fails and it is restarted.
    liveness = {"exec": {"command": ["cat", "/probe/healthy"]}, "failureThreshold": 1}
    sickly = shell(
        "touch /probe/healthy; sleep 1; rm /probe/healthy; exec sleep infinity",
        livenessProbe=liveness,
        volumeMounts=[{"name": "probe", "mountPath": "/probe"}],
    )
    core.create_namespaced_pod(
        namespace, pod("sickly", sickly, volumes=[{"name": "probe", "emptyDir": {}}])
    )

    def ready(p: client.V1Pod) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])

    served = until_pod(core, namespace, "served", ready, "Ready")
    assert served.status.container_statuses[0].ready
    sick = until_pod(
        core,
        namespace,
        "sickly",
        lambda p: bool(
            p.status.container_statuses and p.status.container_statuses[0].restart_count
        ),
        "a restart after the liveness probe failed",
    )
    assert sick.status.container_statuses[0].last_state.terminated.exit_code == 137


def test_a_crashed_node_leaves_nothing_that_breaks_the_next_one(
    control_plane: ControlPlane, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = control_plane.admin_kubeconfig
    # Without scheduling: the session's test node binds pending pods; these two take theirs
    # by name.
    first = TestNode.start(kubeconfig, tmp_path / "first", "crashing-node", schedule=False)
    try:
        core.create_namespaced_pod(namespace, pod("lost", http_server(), nodeName=first.name))
        lost = until_pod(core, namespace, "lost", running, "Running")
        netns = first.netns_name(lost.metadata.uid)
        # The sandbox (2), the launcher and the server.
        pids = eventually(lambda: len(p := netns_pids(netns)) >= 4 and p, what="the processes")
        bridge = interface_index(f"dstb{first.slot}-br")

        first.process.popen.kill()
        first.process.popen.wait()
        eventually(
            lambda: not [pid for pid in pids if alive(pid)],
            what="the pod's processes to die with the agent",
            timeout=10,
        )
        assert netns_identity(netns) is not None  # but the network is left behind
        core.delete_namespaced_pod("lost", namespace, grace_period_seconds=0)
    except BaseException:
        first.stop()
        raise

    second = TestNode.start(kubeconfig, tmp_path / "second", "crashing-node", schedule=False)
    try:
        # The crashed node's namespace is gone, and its bridge too (or made anew).
        assert netns_identity(netns) is None
        assert interface_index(f"dstb{first.slot}-br") != bridge
        core.create_namespaced_pod(namespace, pod("next", http_server(), nodeName=second.name))
        after = until_pod(core, namespace, "next", running, "Running")
        eventually(
            lambda: http_get(after.status.pod_ip, 8080), what="the server", ignore=(OSError,)
        )
        core.delete_namespaced_pod("next", namespace)
        eventually(lambda: gone(core, namespace, "next"), what="the pod to be deleted")
    finally:
        second.stop()
        core.delete_node("crashing-node")


def interface_index(name: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{name}/ifindex").read_text())
    except FileNotFoundError:
        return None


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent's wait() does not)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def netns_identity(netns: str) -> tuple[int, int] | None:
    """Which namespace a name in /run/netns stands for now, if any."""
    try:
        found = Path("/run/netns", netns).stat()
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def netns_pids(netns: str) -> list[int]:
    result = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=True
    )
    return [int(pid) for pid in result.stdout.split()]
