"""A test-node pod's sandbox (test infrastructure): its network and its PID/UTS namespaces.

As a CRI runtime's pod sandbox: the network namespace on the node's bridge with the pod's
NetworkPolicy rules and the `kubernetes` Service's rule in place before anything runs in it,
and a pause process (testbed.container's `pause`) whose init holds the pod's PID and UTS
namespaces, which the pod's containers join.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from testbed.containers import LAUNCHER, reap
from testbed.firewall import Firewall
from testbed.kubeapi import Object
from testbed.netns import Bridge, PodNetwork
from testbed.services import Services


class Sandbox:
    """A pod's network namespace, and the init process that holds its PID/UTS namespaces."""

    def __init__(self, network: PodNetwork, pause: subprocess.Popen[bytes], init: int) -> None:
        """Use create()."""
        self.network = network
        self.pause = pause
        self.init = init

    @classmethod
    def create(
        cls,
        bridge: Bridge,
        pod: Object,
        log: Path,
        firewall: Firewall | None = None,
        services: Services | None = None,
    ) -> Sandbox:
        """Create the netns, its veth, its NetworkPolicy and Service rules (and the hosts
        file beside `log`), the pause process.

        Raises NetworkError or OSError.
        """
        network = bridge.attach(pod["metadata"]["uid"])
        hostname = pod["spec"].get("hostname") or pod["metadata"]["name"]
        try:
            if firewall is not None:
                # Before any process joins the namespace, as a CNI plugin's ADD does.
                firewall.secure(pod, network)
            if services is not None:
                services.secure(pod, network, log.with_name("hosts"))
            with log.open("ab") as out:
                pause = subprocess.Popen(
                    [
                        sys.executable,
                        "-I",
                        str(LAUNCHER),
                        "pause",
                        str(network.netns_path),
                        hostname[:63],
                    ],
                    stdout=subprocess.PIPE,
                    stderr=out,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            assert pause.stdout is not None
            line = pause.stdout.readline()
            pause.stdout.close()
            if not line.strip():
                pause.wait()
                raise OSError(f"pod sandbox did not start (see {log})")
        except BaseException:
            bridge.detach(network)
            if firewall is not None:
                firewall.forget(pod["metadata"]["uid"])
            raise
        return cls(network, pause, int(line))

    def kill(self, bridge: Bridge) -> None:
        """Kill every process of the pod and remove its network; returns when all are gone."""
        # Killing the init kills its PID namespace; its parent reaps it and exits. (Killing
        # the parent first would leave the init a zombie of the host's PID 1.)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.init, signal.SIGKILL)
        reap(self.pause)
        # Whatever else is in the pod's network (a container with a PID namespace of its own,
        # anything exec'd into one) goes too.
        deadline = time.monotonic() + 5
        while (pids := self.network.processes()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        bridge.detach(self.network)
