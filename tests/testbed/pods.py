"""The test node's pod runtime (test infrastructure): runs one pod and reports its status.

A PodWorker is driven by the agent's loop (testbed.node), which calls sync() with the pod's
latest object about ten times a second; sync() does whatever is due — create the sandbox, set
up volumes, start, restart or stop containers — and patches the pod's status when what it would
report has changed (testbed.podstatus). A pod's processes live in its Sandbox's namespaces and
are started by testbed.container's launcher.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import containerspec, images, podstatus, probes, volumes
from testbed.apiservice import ApiService
from testbed.containers import Container, reap
from testbed.firewall import Firewall
from testbed.kubeapi import ApiError, KubeClient, Object, now
from testbed.netns import Bridge, NetworkError
from testbed.sandbox import Sandbox
from testbed.services import Services

RETRY = 1.0  # how soon to retry a sandbox, volume or config that was not ready
REFRESH = 1.0  # how often Secret, ConfigMap and downward API volumes are rewritten
# Volume types that kubelet keeps up to date while the pod runs.
REFRESHED = {"secret", "configMap", "downwardAPI"}


@dataclass
class NodeContext:
    """What every pod on the node shares."""

    api: KubeClient
    name: str
    bridge: Bridge
    directory: Path
    firewall: Firewall | None = None  # enforces NetworkPolicy in the pods' namespaces
    api_service: ApiService | None = None  # the `kubernetes` Service's variables
    services: Services | None = None  # ClusterIP Services and their names, in every pod


class PodWorker:
    """Runs one pod bound to this node until it is deleted; see the module docstring."""

    def __init__(self, node: NodeContext, pod: Object) -> None:
        """Prepare to run `pod`; nothing starts before the first sync()."""
        self.node = node
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.label = f"{meta['name']}_{meta['namespace']}({self.uid})"  # as kubelet names it
        self.path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        self.directory = node.directory / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "pod.json").write_text(json.dumps(pod, indent=1))
        self.inits = [Container(c, init=True) for c in pod["spec"].get("initContainers", [])]
        self.containers = [Container(c, init=False) for c in pod["spec"]["containers"]]
        self.sandbox: Sandbox | None = None
        self.pod_ip: str | None = None
        self.volumes: dict[str, tuple[Path, bool]] | None = None
        self.problem = ""  # why the pod cannot start yet, for its waiting containers
        self.retry_at = 0.0
        self.refresh_at = 0.0
        self.start_time = now()
        self.terminal = False
        self.stop_deadline: float | None = None
        self.done = False
        self.reported: Object | None = None

    @property
    def all_containers(self) -> list[Container]:
        """Init containers, then the others."""
        return self.inits + self.containers

    # The loop's entry points.

    def sync(self, pod: Object) -> None:
        """Do what is due for the pod's latest object, then report status if it changed.

        Raises ApiError or OSError; the next sync() carries on from where this one stopped.
        """
        self.pod = pod
        if self.done:
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._stop()
            return
        if not self.terminal:
            self._run()
        self._report()

    def gone(self) -> None:
        """The pod object was removed without us (force deletion): stop everything now."""
        if not self.done:
            self._kill_all()
            self._cleanup()
            self.done = True

    def shutdown(self, grace: float) -> None:
        """The node stops: SIGTERM, up to `grace` seconds, SIGKILL. The pod stays in the API."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self._running() and time.monotonic() < deadline:
            time.sleep(0.05)
            self._collect_exits(restart=False)
        self._kill_all()
        self._cleanup()
        self.done = True

    # Running.

    def _run(self) -> None:
        now_ = time.monotonic()
        if self.sandbox is None or self.volumes is None:
            if now_ < self.retry_at:
                return
            try:
                if self.sandbox is None:
                    self.sandbox = Sandbox.create(
                        self.node.bridge,
                        self.pod,
                        self.directory / "sandbox.log",
                        self.node.firewall,
                        self.node.services,
                    )
                    self.pod_ip = str(self.sandbox.network.address)
                self.volumes = self._prepare_volumes()
            except (NetworkError, OSError, volumes.VolumeNotReady, ApiError) as error:
                self.problem = str(error)
                self.retry_at = now_ + RETRY
                return
            self.problem = ""
            self.refresh_at = now_ + REFRESH
        self._collect_exits(restart=True)
        if self._start_init_containers():
            for container in self.containers:
                self._start_if_due(container)
        self._probe()
        if now_ >= self.refresh_at:
            self.refresh_at = now_ + REFRESH
            with contextlib.suppress(volumes.VolumeNotReady, ApiError, OSError):
                # On failure kubelet keeps the last good content, and so does this.
                self._prepare_volumes(refresh=True)

    def _prepare_volumes(self, *, refresh: bool = False) -> dict[str, tuple[Path, bool]]:
        fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        prepared = {}
        for volume in self.pod["spec"].get("volumes", []):
            if not refresh or REFRESHED & volume.keys():
                prepared[volume["name"]] = volumes.prepare(
                    self.node.api, self.pod, volume, self.directory / "volumes", fs_group
                )
        return prepared

    def _start_init_containers(self) -> bool:
        """Start init containers one after the other; True once all have done their part."""
        for container in self.inits:
            self._start_if_due(container)
            if not podstatus.initialized(container):
                return False
        return True

    def _start_if_due(self, container: Container) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if not container.due():
            return
        if container.terminated is not None and not container.restarts(policy):
            return
        image = images.resolve(container.spec, self.node.directory / "images")
        if image is None or image.unavailable:
            container.cannot_pull(
                image.unavailable
                if image and image.unavailable
                else f'image "{container.image}" is not in the test node\'s image table '
                "(tests/testbed/images.py)"
            )
            return
        try:
            spec = self._launcher_spec(container, image)
        except (containerspec.ConfigError, ApiError) as error:
            container.cannot_configure(str(error), RETRY)
            return
        container.start(spec, Path(spec["state"]), self.uid)

    def _launcher_spec(self, container: Container, image: images.Image) -> dict[str, Any]:
        """What testbed.container needs to run the container. Raises ConfigError."""
        assert self.sandbox is not None
        assert self.volumes is not None
        pod = {
            **self.pod,
            "status": {
                **self.pod.get("status", {}),
                "podIP": self.pod_ip,
                "hostIP": str(self.node.bridge.gateway),
            },
        }
        identity = containerspec.identity(pod, container.spec, image)
        env = containerspec.environment(self.node.api, pod, container.spec, image, identity.uid)
        if self.node.api_service is not None:
            # As kubelet: the Service's variables first, so the container's own win.
            env = {**self.node.api_service.environment(), **env}
        argv = containerspec.command(container.spec, image, env)
        binds = containerspec.mounts(container.spec, self.volumes, image, env)
        state = self.directory / "containers" / container.name / str(container.restart_count)
        shutil.rmtree(state, ignore_errors=True)
        (state / "root").mkdir(parents=True)
        return {
            "image": str(image.rootfs) if image.rootfs else None,
            # Written with the sandbox (testbed.services): the Services' names.
            "hosts": str(hosts) if (hosts := self.directory / "hosts").exists() else None,
            "netns": str(self.sandbox.network.netns_path),
            "sandbox": self.sandbox.init,
            "sharePid": bool(self.pod["spec"].get("shareProcessNamespace")),
            "state": str(state),
            "root": str(state / "root"),
            "mounts": binds,
            "directories": [[path, *owner] for path, owner in image.directories.items()],
            "readOnlyRoot": identity.read_only_root,
            "uid": identity.uid,
            "gid": identity.gid,
            "groups": list(identity.groups),
            "noNewPrivs": identity.no_new_privs,
            "cwd": container.spec.get("workingDir") or image.working_dir,
            "argv": argv,
            "env": env,
        }

    def _collect_exits(self, *, restart: bool) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for container in self.all_containers:
            if container.collect() and restart and container.restarts(policy):
                container.back_off_restart(self.label)

    def _probe(self) -> None:
        assert self.pod_ip is not None
        for container in self.all_containers:
            if container.attempt is not None and container.running():
                verdict = container.probes.run(self.pod_ip, container.attempt.directory)
                if verdict == probes.RESTART:
                    # A failed liveness or startup probe: the exit is collected as any other.
                    container.attempt.kill()

    # Stopping.

    def _stop(self) -> None:
        """The pod is being deleted: SIGTERM, grace period, SIGKILL, clean up, delete it."""
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        deadline = time.monotonic() + float(grace)
        if self.stop_deadline is None:
            self._signal_all(signal.SIGTERM)
        # A second deletion may shorten the grace period, never lengthen it.
        self.stop_deadline = min(self.stop_deadline or deadline, deadline)
        self._collect_exits(restart=False)
        if self._running() and time.monotonic() < self.stop_deadline:
            self._report()
            return
        self._kill_all()
        self._cleanup()
        self._report()
        # As kubelet does once the pod's containers are gone: this is what lets the pod, and
        # so its namespace, finish terminating.
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            self.node.api.delete(self.path, options)
        except ApiError as error:
            if error.status not in (404, 409):
                raise
        self.done = True

    def _running(self) -> bool:
        return any(c.attempt is not None for c in self.all_containers)

    def _signal_all(self, number: int) -> None:
        for container in self.all_containers:
            if container.attempt is not None:
                container.attempt.signal(number)

    def _kill_all(self) -> None:
        attempts = [c.attempt for c in self.all_containers if c.attempt is not None]
        for attempt in attempts:
            attempt.kill()
        if self.sandbox is not None:
            self.sandbox.kill(self.node.bridge)
            self.sandbox = None
            if self.node.firewall is not None:
                self.node.firewall.forget(self.uid)
            if self.node.services is not None:
                self.node.services.forget(self.uid)
        for attempt in attempts:
            reap(attempt.process)
        self._collect_exits(restart=False)

    def _cleanup(self) -> None:
        """Remove what dies with the pod: its volumes (emptyDir, secrets); keep its logs."""
        shutil.rmtree(self.directory / "volumes", ignore_errors=True)

    # Status.

    def _report(self) -> None:
        status = podstatus.pod_status(
            self.pod,
            self.inits,
            self.containers,
            problem=self.problem,
            sandbox=self.sandbox is not None,
            pod_ip=self.pod_ip,
            host_ip=str(self.node.bridge.gateway),
            start_time=self.start_time,
        )
        if not self.terminal and status["phase"] in podstatus.TERMINAL:
            # Nothing will run again: free the sandbox now, as kubelet does.
            self.terminal = True
            self._kill_all()
            status["conditions"] = podstatus.conditions(
                self.pod, self.inits, self.containers, sandbox=False, phase=status["phase"]
            )
        if status == self.reported:
            return
        try:
            # The uid makes the patch fail on a newer pod of the same name.
            self.node.api.patch(
                f"{self.path}/status", {"metadata": {"uid": self.uid}, "status": status}
            )
        except ApiError as error:
            if error.status not in (404, 409):
                raise
            return
        self.reported = status


def latest_attempt(directory: Path, namespace: str, name: str, container: str | None) -> Path:
    """The newest run's directory of a container of the newest pod `namespace/name`.

    `container` defaults to the pod's first. Raises LookupError when it is not running yet.
    """
    pods = sorted(
        (directory / "pods").glob(f"{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime
    )
    if not pods:
        raise LookupError(f"pod {namespace}/{name} never ran on this node")
    if container is None:
        pod = json.loads((pods[-1] / "pod.json").read_text())
        container = str(pod["spec"]["containers"][0]["name"])
    runs = sorted(
        (run for run in (pods[-1] / "containers" / container).glob("*") if (run / "pid").exists()),
        key=lambda run: int(run.name),
    )
    if not runs:
        raise LookupError(f"container {container!r} of pod {namespace}/{name} is not running")
    return runs[-1]
