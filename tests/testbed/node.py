"""The test bed's node: test infrastructure standing in for kube-scheduler and a kubelet.

Neither a kubelet with a container runtime nor kube-scheduler runs on the test machines, so
this agent plays both for one Node against the test bed's control plane (testbed.agent):

- it registers the Node (capacity, addresses, a Ready condition) and renews its Lease in
  `kube-node-lease`, so the node lifecycle controller keeps it Ready;
- it binds every pending pod for `default-scheduler` to itself (nodeSelector is honoured;
  affinity, taints and resource fit are not: there is only one node);
- it runs each pod in its own network namespace on a test bridge (testbed.netns), so every
  pod has its own localhost; containers are local processes (testbed.container) in the pod's
  namespaces, as the uid/gid the securityContext asks for, commands from an image table
  (testbed.images), volumes mounted at their paths (testbed.volumes), probes run
  (testbed.probes), restarts with back-off (testbed.containers). Our own two images
  (`ghcr.io/devspace/server`, `ghcr.io/devspace/sshd`) run from the trees testbed.rootfs
  built from their Dockerfiles, which a test must have built and loaded (load_image): the
  node only looks them up;
- it plays kube-proxy in each pod's network namespace (testbed.services): ClusterIP
  Services lead to their ready endpoints, and `kubernetes` to the API server through a relay
  (testbed.apiservice), whose variables every container gets, so in-cluster clients work;
  containers of built images find every Service by name in their /etc/hosts; node ports
  are served to this machine on the node's address and on 127.0.0.1;
- it provisions PersistentVolumeClaims as host directories (testbed.storage);
- it enforces NetworkPolicy (networking.k8s.io/v1) with nftables in each pod's network
  namespace, as a CNI plugin would (testbed.firewall, rules from testbed.netpolicy): pod and
  namespace selectors, ipBlock with except, ports (numbered, named, ranges; TCP, UDP, SCTP);
  denied traffic is dropped; loopback, replies and traffic from the node itself are always
  allowed; a pod's rules are in place before its first container starts, and follow policy,
  pod-label and namespace-label changes within a second (connections already open carry on,
  as conntrack keeps them, as with most CNIs). A policy it does not understand allows nothing
  (fail closed, logged). Not enforced: anything about Services; and a
  container with CAP_NET_ADMIN (root in a test container) could flush its pod's rules;
- it reports pod status as a kubelet does (testbed.podstatus), and on deletion stops the pod,
  removes its network namespace and volumes and deletes the object, so namespaces finish
  terminating.

It does not do: pulled images (a test image's container sees the host's files, but its own
/tmp and /run), resource limits or cgroups, seccomp/AppArmor/capabilities beyond the uid and
no_new_privs, node ports from pods or other machines, LoadBalancer addresses, a DNS server,
the kubelet API (`kubectl logs/exec/port-forward`: TestNode.log and TestNode.exec serve tests
instead), ephemeral containers, lifecycle hooks, grpc probes, Events. Probe periods are
capped at a second.

`TestNode.start()` runs the agent as its own process (`python -m testbed.node`), so that a
hung agent cannot hang pytest; the agent's pods die with it, and the next agent removes the
network namespaces and bridge that a crashed one left (testbed.netns).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from testbed import netns, rootfs
from testbed.agent import Agent
from testbed.container import exec_command
from testbed.kubeapi import KubeClient
from testbed.pods import latest_attempt
from testbed.process import Process, wait_until

TESTS = Path(__file__).resolve().parents[1]
log = logging.getLogger("testbed.node")


@dataclass
class TestNode:
    """A running test-node agent, as the tests see it.

    `name` is the Node's name; pods get addresses in `subnet`, and `gateway` is the host's
    address on the node's bridge (host processes reach pod IPs directly).
    """

    __test__: ClassVar[bool] = False  # a test-bed object, not a pytest test class

    name: str
    directory: Path
    slot: int
    subnet: str
    gateway: str
    process: Process

    @classmethod
    def start(
        cls,
        kubeconfig: Path,
        directory: Path,
        name: str = "testbed-node",
        *,
        schedule: bool = True,
        timeout: float = 60,
    ) -> TestNode:
        """Start the agent; returns once its Node is registered and Ready.

        With `schedule` it also binds pending pods to its node (one node per cluster should);
        without, it runs only pods given its name in `spec.nodeName`.
        Raises testbed.process.StartError, with the agent's log, when it does not get there.
        """
        directory.mkdir(parents=True, exist_ok=True)
        state = directory / "node.json"
        state.unlink(missing_ok=True)
        path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
        process = Process(
            "testbed-node",
            [
                sys.executable,
                "-m",
                "testbed.node",
                "--kubeconfig",
                str(kubeconfig),
                "--directory",
                str(directory),
                "--name",
                name,
                *([] if schedule else ["--no-schedule"]),
            ],
            directory / "agent.log",
            env={**os.environ, "PYTHONPATH": path},
        )
        try:
            wait_until(state.exists, what="test node", timeout=timeout, process=process)
        except BaseException:
            process.stop()
            raise
        info = json.loads(state.read_text())
        return cls(name, directory, info["slot"], info["subnet"], info["gateway"], process)

    def stop(self) -> None:
        """Stop the agent, every pod process, and remove every netns, veth and the bridge."""
        self.process.stop(timeout=20)
        # In case the agent could not finish that itself (a slot it lost is left alone).
        netns.release_slot(self.slot, self.process.popen.pid)

    def load_image(self, name: str, image: rootfs.Image) -> None:
        """Make the node run `image` for our image `name` (`server`, `sshd`: see
        testbed.images), whatever the sources become meanwhile, as `kind load` does."""
        loaded = self.directory / "images"
        loaded.mkdir(exist_ok=True)
        link = loaded / f".{name}.new"
        link.unlink(missing_ok=True)
        link.symlink_to(image.path)
        link.rename(loaded / name)

    def netns_name(self, pod_uid: str) -> str:
        """The network namespace a pod with this uid runs in (while it runs)."""
        return f"{netns.PREFIX}{self.slot}-{pod_uid[:13]}"

    def exec(
        self,
        namespace: str,
        pod: str,
        argv: list[str],
        container: str | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in a running container (its namespaces, root, user, env), like
        `kubectl exec`; returns the finished process with its output as text.

        Raises LookupError when the container never started, TimeoutExpired on timeout.
        """
        state = latest_attempt(self.directory, namespace, pod, container)
        return subprocess.run(
            exec_command(state, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """The output of a container's latest run, like `kubectl logs`.

        Raises LookupError when the container never started.
        """
        state = latest_attempt(self.directory, namespace, pod, container)
        return (state / "log").read_text(errors="replace")


def main(argv: list[str] | None = None) -> int:
    """`python -m testbed.node`: run the agent until SIGTERM/SIGINT; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m testbed.node", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--name", default="testbed-node")
    parser.add_argument(
        "--no-schedule", action="store_true", help="run only pods whose nodeName is this node's"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s: %(message)s"
    )
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    if os.geteuid() != 0:
        log.error("the test node needs root (network namespaces, mounts, other uids)")
        return 1
    bridge = netns.Bridge.claim()
    try:
        api = KubeClient(args.kubeconfig, args.directory / "credentials")
        Agent(api, args.name, args.directory, bridge, schedule=not args.no_schedule).run(stop)
    finally:
        bridge.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
