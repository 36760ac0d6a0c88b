"""Startup, readiness and liveness probes for test-node containers (test infrastructure).

The agent's loop runs them. tcpSocket and httpGet connect from the host to the pod's IP over
the test bridge, as kubelet connects from the node; a probe's `host` field is ignored, so a
probe never reaches beyond the pod. exec runs the command inside the container (see
testbed.container.exec_command). Thresholds and timeouts are honoured; initial delays and
periods are capped at one second so that tests need not wait for them.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from testbed.container import exec_command

RESTART = "restart"
_CAP = 1.0


class ProbeState:
    """One container's probes: whether it has started and is ready, and when to probe next."""

    def __init__(self, spec: dict[str, Any]) -> None:
        """`spec` is the container's entry in the pod spec."""
        self.spec = spec
        self.started = False
        self.ready = False
        self._due = 0.0
        self._successes: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self.restart()

    def restart(self) -> None:
        """A new run of the container begins: nothing is known about it yet."""
        self.started = "startupProbe" not in self.spec
        self.ready = self.started and "readinessProbe" not in self.spec
        delays = [
            self.spec[kind].get("initialDelaySeconds", 0)
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in self.spec
        ]
        self._due = time.monotonic() + min(min(delays, default=0), _CAP)
        self._successes.clear()
        self._failures.clear()

    def run(self, pod_ip: str, state: Path) -> str | None:
        """Probe what is due; returns RESTART when the container must be killed."""
        if time.monotonic() < self._due:
            return None
        kinds = ["startupProbe"] if not self.started else ["readinessProbe", "livenessProbe"]
        periods = []
        verdict = None
        for kind in kinds:
            probe = self.spec.get(kind)
            if probe is None:
                continue
            periods.append(probe.get("periodSeconds", 10))
            passed = self._record(kind, probe, check(probe, self.spec, pod_ip, state))
            if kind == "startupProbe" and passed is not None:
                self.started = passed
                self.ready = passed and "readinessProbe" not in self.spec
                verdict = None if passed else RESTART
            elif kind == "readinessProbe" and passed is not None:
                self.ready = passed
            elif kind == "livenessProbe" and passed is False:
                verdict = RESTART
        self._due = time.monotonic() + min(min(periods, default=_CAP), _CAP)
        return verdict

    def _record(self, kind: str, probe: dict[str, Any], success: bool) -> bool | None:
        """Count a result; True/False once a threshold is reached, None while undecided."""
        if success:
            self._failures[kind] = 0
            self._successes[kind] = self._successes.get(kind, 0) + 1
            if self._successes[kind] >= probe.get("successThreshold", 1):
                return True
        else:
            self._successes[kind] = 0
            self._failures[kind] = self._failures.get(kind, 0) + 1
            if self._failures[kind] >= probe.get("failureThreshold", 3):
                return False
        return None


def check(probe: dict[str, Any], container: dict[str, Any], pod_ip: str, state: Path) -> bool:
    """Run one probe once; True when it passes."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "tcpSocket" in probe:
            port = _port(probe["tcpSocket"]["port"], container)
            with socket.create_connection((pod_ip, port), timeout=timeout):
                return True
        if "httpGet" in probe:
            action = probe["httpGet"]
            connection = http.client.HTTPConnection(
                pod_ip, _port(action["port"], container), timeout=timeout
            )
            try:
                headers = {h["name"]: h["value"] for h in action.get("httpHeaders", [])}
                connection.request("GET", action.get("path", "/"), headers=headers)
                return 200 <= connection.getresponse().status < 400
            finally:
                connection.close()
        if "exec" in probe:
            result = subprocess.run(
                exec_command(state, probe["exec"]["command"]),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            return result.returncode == 0
    except (OSError, http.client.HTTPException, subprocess.TimeoutExpired):
        return False
    return False  # grpc probes are not supported: never passes, visibly


def _port(port: int | str, container: dict[str, Any]) -> int:
    if isinstance(port, int) or port.isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise OSError(f"no port named {port!r}")
