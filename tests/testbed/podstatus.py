"""A test-node pod's status, by kubelet's rules (test infrastructure).

Pure functions of what the pod worker knows: its containers, whether the sandbox exists, why
the pod cannot start yet. Phase follows kubelet's getPhase (a container waiting to restart
counts as stopped, so a crash-looping pod is Running); conditions keep their transition
times while their status holds; conditions set by others (PodScheduled, readiness gates) are
kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from testbed.containers import Container
from testbed.kubeapi import Object, now

TERMINAL = ("Succeeded", "Failed")


def initialized(container: Container) -> bool:
    """An init container has done its part: completed, or (a sidecar) started."""
    return container.has_run if container.sidecar else container.succeeded


def phase(policy: str, inits: Sequence[Container], containers: Sequence[Container]) -> str:
    """The pod's phase under restartPolicy `policy`."""
    if not all(initialized(c) for c in inits):
        failed = any(c.terminated and c.terminated["exitCode"] != 0 for c in inits if not c.sidecar)
        return "Failed" if failed and policy == "Never" else "Pending"
    running = waiting = stopped = succeeded = 0
    for container in containers:
        if container.running():
            running += 1
        elif container.terminated is not None:
            stopped += 1
            succeeded += container.succeeded
        elif container.last is not None:
            stopped += 1  # waiting to run again after an exit counts as stopped
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if policy == "Always" or (policy == "OnFailure" and stopped != succeeded):
        return "Running"
    return "Succeeded" if stopped == succeeded else "Failed"


def pod_status(
    pod: Object,
    inits: Sequence[Container],
    containers: Sequence[Container],
    *,
    problem: str,
    sandbox: bool,
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
) -> Object:
    """The pod's whole status, as the worker patches it.

    `problem` says why the pod cannot start yet (sandbox, volumes), `sandbox` whether its
    sandbox exists now; `pod_ip` is reported even after the sandbox is gone, as kubelet does.
    """
    done = all(initialized(c) for c in inits)
    current = phase(pod["spec"].get("restartPolicy", "Always"), inits, containers)
    creating = ("ContainerCreating", problem)
    status: Object = {
        "phase": current,
        "conditions": conditions(pod, inits, containers, sandbox=sandbox, phase=current),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [
            c.status(creating if done else ("PodInitializing", "")) for c in containers
        ],
    }
    if inits:
        status["initContainerStatuses"] = [c.status(creating) for c in inits]
    if pod_ip is not None:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status


def conditions(
    pod: Object,
    inits: Sequence[Container],
    containers: Sequence[Container],
    *,
    sandbox: bool,
    phase: str,
) -> list[Object]:
    """PodReadyToStartContainers, Initialized, ContainersReady and Ready, plus the others'."""
    previous = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}
    unready = [c.name for c in containers if not c.ready()]
    incomplete = [c.name for c in inits if not initialized(c)]
    gates = [g["conditionType"] for g in pod["spec"].get("readinessGates", [])]
    gated = [g for g in gates if previous.get(g, {}).get("status") != "True"]
    finished = phase in TERMINAL
    not_ready = "PodCompleted" if finished else "ContainersNotReady"
    containers_ready = not incomplete and not unready and not finished
    wanted: dict[str, tuple[bool, str, str]] = {
        "PodReadyToStartContainers": (sandbox, "", ""),
        "Initialized": (
            not incomplete,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        ),
        "ContainersReady": (
            containers_ready,
            not_ready,
            f"containers with unready status: [{' '.join(unready)}]",
        ),
        "Ready": (
            containers_ready and not gated,
            not_ready if not containers_ready else "ReadinessGatesNotReady",
            f"containers with unready status: [{' '.join(unready)}]"
            if not containers_ready
            else f'the status of pod readiness gates is not "True": {gated}',
        ),
    }
    result = [c for kind, c in previous.items() if kind not in wanted]
    for kind, (true, reason, message) in wanted.items():
        value = "True" if true else "False"
        old = previous.get(kind, {})
        condition: Object = {
            "type": kind,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": old["lastTransitionTime"]
            if old.get("status") == value and old.get("lastTransitionTime")
            else now(),
        }
        if not true and reason:
            condition |= {"reason": reason, "message": message}
        result.append(condition)
    return result
