"""TCP reachability checks for the network policy tests (test infrastructure).

A check opens TCP connections from inside a pod (through TestNode.exec, as the pod's own user),
from a network namespace, or from the host, all at once, and says for each target how it went:
OPEN, REFUSED (the address answered: nothing listens there) or DROPPED (no answer before the
timeout — what a NetworkPolicy drop looks like). Comparing a pod's DROPPED with the host's OPEN
for the same target is what tells "blocked" from "down".

`fake_metadata_server()` stands a cloud metadata endpoint (169.254.169.254) up in a network
namespace of the test's own, wired to one pod only, so that egress to it can be tried without
ever sending a packet beyond the machine.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from testbed.netns import ip

if TYPE_CHECKING:
    from testbed.node import TestNode

OPEN, REFUSED, DROPPED = "open", "ECONNREFUSED", "timeout"
PYTHON = "/usr/bin/python3"  # Debian's: containers run as users that cannot read the venv

# Standard library only: it runs inside containers, as whatever user they run as.
SCRIPT = """\
import errno, json, socket, sys, threading
timeout, results = float(sys.argv[1]), {}
def probe(target):
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(timeout)
    try:
        s.connect((host.strip("[]"), int(port)))
        results[target] = "open"
    except TimeoutError:
        results[target] = "timeout"
    except OSError as e:
        results[target] = errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
threads = [threading.Thread(target=probe, args=(t,)) for t in sys.argv[2:]]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(results))
"""


def _parse(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    if result.returncode != 0:
        raise RuntimeError(f"probe failed ({result.returncode}): {result.stderr[-2000:]}")
    answer: dict[str, str] = json.loads(result.stdout)
    return answer


def from_pod(
    node: TestNode,
    namespace: str,
    pod: str,
    targets: Sequence[str],
    *,
    container: str | None = None,
    timeout: float = 1.0,
) -> dict[str, str]:
    """How `host:port` targets answer a TCP connect from inside a running container."""
    argv = [PYTHON, "-I", "-c", SCRIPT, str(timeout), *targets]
    result = node.exec(namespace, pod, argv, container=container, timeout=timeout + 20)
    return _parse(result)


def from_netns(netns: str | None, targets: Sequence[str], timeout: float = 1.0) -> dict[str, str]:
    """The same from a named network namespace, or from the host's (`netns` None)."""
    enter = [] if netns is None else ["nsenter", f"--net=/run/netns/{netns}"]
    result = subprocess.run(
        [*enter, sys.executable, "-I", "-c", SCRIPT, str(timeout), *targets],
        capture_output=True,
        text=True,
        timeout=timeout + 20,
        check=False,
    )
    return _parse(result)


LISTENER = """\
import socket, sys, threading
def serve(address):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, 80))
    s.listen(16)
    while True:
        s.accept()[0].close()
for address in sys.argv[1:]:
    threading.Thread(target=serve, args=(address,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


@contextlib.contextmanager
def fake_metadata_server(
    pod_netns: str, addresses: Sequence[str] = ("169.254.169.254", "169.254.169.253")
) -> Iterator[str]:
    """TCP listeners on port 80 of `addresses`, in a throwaway netns linked to one pod only.

    A veth pair joins the new namespace to `pod_netns` with a route there for each address,
    so the pod (and nothing else on the machine) can reach them. Yields the namespace's name;
    removes it, its listener and the pod's end of the link afterwards. Raises NetworkError.
    """
    name = f"dstest-meta-{uuid.uuid4().hex[:8]}"
    outer, inner = f"dsmeta{name[-8:]}", "metadata0"
    listener: subprocess.Popen[str] | None = None
    ip("netns", "add", name)
    try:
        ip(
            "-n",
            name,
            "link",
            "add",
            outer,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "netns",
            pod_netns,
        )
        pod_address = ip("-n", pod_netns, "-4", "-o", "addr", "show", "dev", "eth0").split()[3]
        commands = [f"addr add {a}/32 dev {outer}" for a in addresses]
        commands += ["link set lo up", f"link set {outer} up"]
        commands.append(f"route add {pod_address.split('/')[0]}/32 dev {outer}")
        ip("-n", name, "-batch", "-", stdin="\n".join(commands) + "\n")
        source = pod_address.split("/")[0]
        routes = [f"route add {a}/32 dev {inner} src {source}" for a in addresses]
        ip(
            "-n",
            pod_netns,
            "-batch",
            "-",
            stdin=f"link set {inner} up\n" + "\n".join(routes) + "\n",
        )
        listener = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{name}",
                sys.executable,
                "-I",
                "-c",
                LISTENER,
                *addresses,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None
        if listener.stdout.readline().strip() != "ready":
            raise RuntimeError("the fake metadata listener did not start")
        yield name
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
            if listener.stdout is not None:
                listener.stdout.close()
        ip("netns", "del", name, check=False)  # takes the veth pair, both ends, with it
