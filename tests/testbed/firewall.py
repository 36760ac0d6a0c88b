"""The test node's NetworkPolicy enforcement (test infrastructure): nftables in each pod's netns.

The agent (testbed.agent) keeps caches of pods, namespaces and NetworkPolicies from its watches
and tells the Firewall when any of them changed; sync() then recomputes every local pod's rules
(testbed.netpolicy, pure) and applies those that differ with `nft -f`, one atomic transaction
per pod. A new pod's rules are applied by secure() between creating its network namespace and
starting anything in it, as a CNI plugin does in ADD, so no container ever runs unpoliced; and
no pod gets a network before the node has listed the policies once (fail closed).

Why the pod's own namespace and not the host's bridge: a table per pod is replaced on its own
without touching the host's firewall (Docker's, another test session's), it goes away with the
namespace, and it needs no br_netfilter. Its weakness: a process with CAP_NET_ADMIN inside the
pod (root in a test container) could flush it; tenant pods run as non-root without it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time

from testbed.kubeapi import Object
from testbed.netns import NetworkError, PodNetwork
from testbed.netpolicy import Cluster, pod_rules

log = logging.getLogger("testbed.firewall")

# Until the agent has listed these once, nothing is known about what is allowed.
KINDS = ("pod", "namespace", "networkpolicy")
RETRY = 1.0  # how soon to try again after rules could not be applied


class Firewall:
    """Keeps every local pod's nftables rules in step with the cluster's NetworkPolicies."""

    def __init__(
        self,
        node_address: str,
        pods: dict[str, Object],
        namespaces: dict[str, Object],
        policies: dict[str, Object],
    ) -> None:
        """Read the agent's caches (uid → object), which it keeps up to date."""
        self.node_address = node_address
        self.pods = pods
        self.namespaces = namespaces
        self.policies = policies
        self.listed: set[str] = set()
        self.networks: dict[str, PodNetwork] = {}
        self.applied: dict[str, str] = {}
        self.logged: dict[str, set[str]] = {}  # per pod, so each problem is logged once
        self.dirty = True
        self.retry_at = 0.0
        self.inputs: str | None = None  # what the applied rules were worked out from

    @property
    def ready(self) -> bool:
        """Whether pods, namespaces and policies have all been listed at least once."""
        return self.listed.issuperset(KINDS)

    def changed(self, kind: str, *, listed: bool = False) -> None:
        """An object of `kind` changed (`listed`: a whole listing arrived): recompute."""
        if listed:
            self.listed.add(kind)
        self.dirty = True

    def secure(self, pod: Object, network: PodNetwork) -> None:
        """Apply `pod`'s rules in its new network namespace now, before anything runs there.

        Raises NetworkError when the policies are not listed yet or nft fails; the caller
        must then not start the pod.
        """
        if not self.ready:
            raise NetworkError("the node has not listed the NetworkPolicies yet")
        uid = pod["metadata"]["uid"]
        self.networks[uid] = network
        try:
            self._apply(pod, network, self._cluster())
        except NetworkError:
            raise
        except Exception as error:
            # A bug in netpolicy: the pod waits (and is retried) as for any network trouble.
            raise NetworkError(f"network policy for {_name(pod)}: {error!r}") from error
        self.dirty = True  # other pods' rules may name its address

    def forget(self, uid: str) -> None:
        """The pod's network namespace is gone (and its rules with it)."""
        self.networks.pop(uid, None)
        self.applied.pop(uid, None)
        self.logged.pop(uid, None)
        self.dirty = True

    def sync(self) -> None:
        """Bring every local pod's rules up to date if anything changed; logs what fails."""
        if not self.dirty or not self.ready or time.monotonic() < self.retry_at:
            return
        self.dirty = False
        inputs = self._inputs()
        if inputs == self.inputs:
            return  # a pod's status or a namespace's annotations: nothing rules depend on
        self.inputs = inputs
        cluster = self._cluster()
        for uid, network in list(self.networks.items()):
            pod = self.pods.get(uid)
            if pod is None:
                continue  # deleted: its worker removes the namespace
            try:
                self._apply(pod, network, cluster)
            except Exception as error:
                # Also a bug in netpolicy: the node must go on. The old rules stay in force
                # (nft applies all or nothing), and it is tried again.
                self.dirty = True
                self.inputs = None
                self.retry_at = time.monotonic() + RETRY
                self._log_once(uid, f"network policy for {_name(pod)} not applied: {error!r}")

    def _inputs(self) -> str:
        """Everything in the caches that rules depend on, as one comparable string."""
        pods = {
            uid: [
                pod["metadata"]["namespace"],
                pod["metadata"].get("labels"),
                (pod.get("status") or {}).get("podIP"),
                (pod.get("status") or {}).get("phase"),
                [
                    c.get("ports")
                    for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
                ],
            ]
            for uid, pod in self.pods.items()
        }
        return json.dumps(
            {
                "pods": pods,
                "namespaces": [ns["metadata"].get("labels") for ns in self.namespaces.values()],
                "policies": [[p["metadata"], p.get("spec")] for p in self.policies.values()],
                "local": {uid: str(network.address) for uid, network in self.networks.items()},
            },
            sort_keys=True,
        )

    def _cluster(self) -> Cluster:
        return Cluster(
            policies=list(self.policies.values()),
            pods=list(self.pods.values()),
            namespaces={
                ns["metadata"]["name"]: ns["metadata"].get("labels") or {}
                for ns in self.namespaces.values()
            },
            addresses={uid: str(network.address) for uid, network in self.networks.items()},
        )

    def _apply(self, pod: Object, network: PodNetwork, cluster: Cluster) -> None:
        uid = pod["metadata"]["uid"]
        rules = pod_rules(pod, cluster, self.node_address)
        for problem in rules.problems:
            self._log_once(uid, problem, level=logging.ERROR)
        if self.applied.get(uid) == rules.script:
            return
        result = subprocess.run(
            ["nsenter", f"--net={network.netns_path}", "nft", "-f", "-"],
            input=rules.script,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise NetworkError(f"nft: {result.stderr.strip()[:500]}\n{rules.script}")
        self.applied[uid] = rules.script
        isolated = ", ".join(sorted(rules.isolated)) or "nothing (no policy selects it)"
        log.info(
            "network policy: %s isolated for %s, %d allow rules",
            _name(pod),
            isolated,
            rules.allowed,
        )

    def _log_once(self, uid: str, message: str, level: int = logging.WARNING) -> None:
        seen = self.logged.setdefault(uid, set())
        if message not in seen:
            seen.add(message)
            log.log(level, "%s", message)


def _name(pod: Object) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
