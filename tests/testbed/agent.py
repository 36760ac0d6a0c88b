"""The test node's agent loop (test infrastructure): kube-scheduler's and kubelet's part.

It registers the Node and keeps its Lease fresh, watches pods and claims, binds pending pods
to its node, hands the node's pods to PodWorkers (testbed.pods) and claims to the Provisioner
(testbed.storage). It also watches namespaces and NetworkPolicies, for the Firewall
(testbed.firewall) that enforces policies in its pods, and Services and EndpointSlices, for
the Services rules and names in its pods (testbed.services). See testbed.node for what the
test node does and does not do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import queue
import threading
import time
from pathlib import Path

from testbed import netns
from testbed.apiservice import ApiService
from testbed.firewall import Firewall
from testbed.kubeapi import ApiError, KubeClient, Object, now, now_micro
from testbed.netns import NetworkError
from testbed.pods import NodeContext, PodWorker
from testbed.services import Services
from testbed.storage import Provisioner

LEASE_SECONDS = 40
RENEW_SECONDS = 10.0
STATUS_SECONDS = 60.0
SHUTDOWN_GRACE = 1.0  # the test run is over; nobody waits for a graceful exit
log = logging.getLogger("testbed.node")


class Agent:
    """The node agent's loop: watches pods and claims, binds, runs, reports."""

    def __init__(
        self,
        api: KubeClient,
        name: str,
        directory: Path,
        bridge: netns.Bridge,
        *,
        schedule: bool = True,
    ) -> None:
        """Serve Node `name`, keeping pod files under `directory`.

        With `schedule`, also bind pending pods to it; one node per cluster should, or they
        race for every pod.
        """
        self.api = api
        self.schedule = schedule
        self.name = name
        self.directory = directory
        self.bridge = bridge
        self.events: queue.Queue[tuple[str, str, Object]] = queue.Queue()
        self.pods: dict[str, Object] = {}
        self.claims: dict[str, Object] = {}
        self.namespaces: dict[str, Object] = {}
        self.policies: dict[str, Object] = {}
        self.services: dict[str, Object] = {}
        self.slices: dict[str, Object] = {}
        self.firewall = Firewall(str(bridge.gateway), self.pods, self.namespaces, self.policies)
        self.node = NodeContext(api, name, bridge, directory, self.firewall)
        self.provisioner = Provisioner(api, directory / "persistent-volumes")
        self.workers: dict[str, PodWorker] = {}
        self.bound: set[str] = set()
        self.unschedulable: set[str] = set()
        self.failures: dict[str, str] = {}
        self.registered = now()

    def run(self, stop: threading.Event) -> None:
        """Register, then serve until `stop` is set; then stop every pod."""
        self._register()
        gateway = str(self.bridge.gateway)
        self.node.api_service = relay = ApiService.start(self.api, gateway)
        self.node.services = Services(
            gateway, relay, self.services, self.slices, bridge=self.bridge.name
        )
        self.provisioner.install()
        for path, kind in (
            ("/api/v1/pods", "pod"),
            ("/api/v1/persistentvolumeclaims", "claim"),
            ("/api/v1/namespaces", "namespace"),
            ("/apis/networking.k8s.io/v1/networkpolicies", "networkpolicy"),
            ("/api/v1/services", "service"),
            ("/apis/discovery.k8s.io/v1/endpointslices", "endpointslice"),
        ):
            threading.Thread(
                target=self._watch, args=(path, kind, stop), name=f"watch-{kind}", daemon=True
            ).start()
        threading.Thread(
            target=self._heartbeat, args=(stop,), name="heartbeat", daemon=True
        ).start()
        # Written whole, then renamed: TestNode.start() reads it as soon as it exists, and
        # with the watch threads just started, a plain write can be caught half done.
        ready = self.directory / "node.json.tmp"
        ready.write_text(
            json.dumps(
                {
                    "name": self.name,
                    "slot": self.bridge.slot,
                    "subnet": str(self.bridge.subnet),
                    "gateway": str(self.bridge.gateway),
                    "pid": os.getpid(),
                }
            )
        )
        ready.rename(self.directory / "node.json")
        log.info("node %s ready on %s", self.name, self.bridge.name)
        while not stop.is_set():
            self._receive(timeout=0.1)
            self._sync()
        self._shutdown()
        if self.node.services is not None:
            with contextlib.suppress(NetworkError):
                self.node.services.close()
        if self.node.api_service is not None:
            self.node.api_service.stop()

    # Watching.

    def _watch(self, path: str, kind: str, stop: threading.Event) -> None:
        """List, then watch; relist when the watch expires (410) or the connection breaks."""
        while not stop.is_set():
            try:
                listing = self.api.get(path)
                self.events.put(("reset", kind, listing))
                version = listing["metadata"]["resourceVersion"]
                while not stop.is_set():
                    for event in self.api.watch(path, version):
                        version = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            self.events.put((event["type"], kind, event["object"]))
            except ApiError as error:
                if error.status != 410:
                    log.warning("watch %s: %s", path, error)
                    time.sleep(0.5)
            except (OSError, ValueError) as error:
                log.warning("watch %s: %s", path, error)
                time.sleep(0.5)

    def _receive(self, timeout: float) -> None:
        with contextlib.suppress(queue.Empty):
            event = self.events.get(timeout=timeout)
            while True:
                self._apply(*event)
                event = self.events.get_nowait()

    def _apply(self, kind_of_event: str, kind: str, obj: Object) -> None:
        cache = {
            "pod": self.pods,
            "claim": self.claims,
            "namespace": self.namespaces,
            "networkpolicy": self.policies,
            "service": self.services,
            "endpointslice": self.slices,
        }[kind]
        if kind in ("service", "endpointslice"):
            if self.node.services is not None:
                self.node.services.changed()
        elif kind != "claim":
            self.firewall.changed(kind, listed=kind_of_event == "reset")
        if kind_of_event == "reset":
            cache.clear()
            cache.update({item["metadata"]["uid"]: item for item in obj["items"]})
        elif kind_of_event == "DELETED":
            cache.pop(obj["metadata"]["uid"], None)
        else:
            cache[obj["metadata"]["uid"]] = obj

    # Pods.

    def _sync(self) -> None:
        for uid, pod in list(self.pods.items()):
            node = pod["spec"].get("nodeName")
            try:
                if not node and self.schedule:
                    self._bind(pod)
                elif node == self.name:
                    if uid not in self.workers:
                        self.workers[uid] = PodWorker(self.node, pod)
                    self.workers[uid].sync(pod)
            except Exception as error:
                # One pod's trouble must not stop the node; it is logged once per kind.
                if self.failures.get(uid) != str(error):
                    self.failures[uid] = str(error)
                    log.exception("pod %s: %s", pod["metadata"]["name"], error)
        for uid in [uid for uid in self.workers if uid not in self.pods]:
            self.workers.pop(uid).gone()
        self.firewall.sync()
        if self.node.services is not None:
            self.node.services.sync()
        try:
            self.provisioner.sync(self.claims)
        except (ApiError, OSError) as error:
            log.warning("provisioner: %s", error)

    def _bind(self, pod: Object) -> None:
        """Play kube-scheduler for a pending pod: bind it here if it may run here."""
        meta, spec = pod["metadata"], pod["spec"]
        if (
            meta["uid"] in self.bound
            or spec.get("schedulerName", "default-scheduler") != "default-scheduler"
            or meta.get("deletionTimestamp")
            or spec.get("schedulingGates")
            or pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
        ):
            return
        labels = self._labels()
        selector = spec.get("nodeSelector") or {}
        if any(labels.get(key) != value for key, value in selector.items()):
            if meta["uid"] not in self.unschedulable:
                self._unschedulable(pod)
            return
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
        }
        try:
            self.api.create(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", binding
            )
        except ApiError as error:
            # Gone, bound meanwhile, or its namespace is terminating: nothing to do. Anything
            # else is tried again on the next round.
            if error.status not in (403, 404, 409):
                raise
            log.info("not binding %s/%s: %s", meta["namespace"], meta["name"], error)
        self.bound.add(meta["uid"])

    def _unschedulable(self, pod: Object) -> None:
        """Say why a pod stays pending, as kube-scheduler does."""
        meta = pod["metadata"]
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/1 nodes are available: "
            "1 node(s) didn't match Pod's node affinity/selector.",
            "lastProbeTime": None,
            "lastTransitionTime": now(),
        }
        try:
            # With the resourceVersion seen, so a pod changed meanwhile is looked at again.
            self.api.patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                {
                    "metadata": {"resourceVersion": meta["resourceVersion"]},
                    "status": {"conditions": [condition]},
                },
            )
        except ApiError as error:
            if error.status not in (404, 409):
                raise
            return
        self.unschedulable.add(meta["uid"])

    def _shutdown(self) -> None:
        """Stop every pod's processes (SIGTERM, a short grace, SIGKILL); objects stay."""
        workers = list(self.workers.values())
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for worker in workers:
            worker.shutdown(max(0.0, deadline - time.monotonic()))
        self.workers.clear()

    # The Node and its Lease.

    def _labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _architecture(),
            "devspace.test/testbed-node": "true",
        }

    def _register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self._labels()},
            "spec": {"podCIDR": str(self.bridge.subnet), "podCIDRs": [str(self.bridge.subnet)]},
        }
        try:
            created = self.api.create("/api/v1/nodes", node)
        except ApiError as error:
            if error.status != 409:
                raise
            created = self.api.patch(f"/api/v1/nodes/{self.name}", {"metadata": node["metadata"]})
        self._report_node()
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": self.name,
                        "uid": created["metadata"]["uid"],
                    }
                ],
            },
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": now_micro(),
            },
        }
        try:
            self.api.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)
        except ApiError as error:
            if error.status != 409:
                raise
            self._renew_lease()

    def _renew_lease(self) -> None:
        self.api.patch(
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}",
            {"spec": {"holderIdentity": self.name, "renewTime": now_micro()}},
        )

    def _heartbeat(self, stop: threading.Event) -> None:
        """Renew the Lease often and the Node's status now and then, as kubelet does."""
        last_status = time.monotonic()
        while not stop.wait(RENEW_SECONDS):
            try:
                self._renew_lease()
                if time.monotonic() - last_status >= STATUS_SECONDS:
                    self._report_node()
                    last_status = time.monotonic()
            except (ApiError, OSError) as error:
                log.warning("heartbeat: %s", error)

    def _report_node(self) -> None:
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID"),
            ("Ready", "True", "KubeletReady"),
        ]
        resources = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{_memory_kib()}Ki",
            "pods": "110",
            "ephemeral-storage": "10Gi",
        }
        version = self.api.get("/version").get("gitVersion", "v0.0.0")
        status = {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": kind,
                    "status": value,
                    "reason": reason,
                    "message": "the test bed's node agent is posting status",
                    "lastHeartbeatTime": now(),
                    "lastTransitionTime": self.registered,
                }
                for kind, value, reason in conditions
            ],
            "addresses": [
                {"type": "InternalIP", "address": str(self.bridge.gateway)},
                {"type": "Hostname", "address": self.name},
            ],
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/etc/machine-id"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": "devspace test bed (local processes)",
                "containerRuntimeVersion": "testbed://1",
                "kubeletVersion": version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _architecture(),
            },
        }
        self.api.patch(f"/api/v1/nodes/{self.name}/status", {"status": status})


def _architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _memory_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""
