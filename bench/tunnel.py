"""Tunnels: devspace's `forward_local` against OpenSSH `ssh -L`, one hop and through the
gateway (`ssh -J … -L`), and the time to connect through both hops and run a command.

Both tunnels go to the same sidecar and on to the same server in the pod (the test pod's
`python -m http.server` on 127.0.0.1:8000), and the same client reads the same file through
each. Only the tunnel differs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.bed import Sidecar
from bench.gateway import GatewayRoute
from bench.report import Row, Samples, now, turns
from bench.sync import CIPHER
from devspace.ssh import Connection
from testbed.process import free_port

# The client runs in its own process, as a browser or curl would: in the bench's process it
# would contend for the GIL with paramiko's forwarding threads, a cost no user pays.
_CLIENT = """
import socket, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
received, buffer = 0, bytearray(1 << 20)
started = time.perf_counter()
with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
    sock.sendall(f"GET {path} HTTP/1.0\\r\\nHost: pod\\r\\n\\r\\n".encode())
    while count := sock.recv_into(buffer):
        received += count
print(received, time.perf_counter() - started)
"""


def fetch(port: int, path: str) -> tuple[int, float]:
    """GET `path` through 127.0.0.1:`port` from a separate process; return the bytes received
    (headers included) and the seconds from connecting to the end of the response."""
    output = subprocess.run(
        [sys.executable, "-c", _CLIENT, str(port), path],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout.split()
    return int(output[0]), float(output[1])


def _timed(port: int, path: str, size: int) -> float:
    received, seconds = fetch(port, path)
    if received < size:
        raise RuntimeError(f"the tunnel carried {received} bytes, not the file's {size}")
    return size / (1 << 20) / seconds


def listening(port: int, process: subprocess.Popen[bytes], seconds: float = 15) -> None:
    """Wait until `process` (an `ssh … -L`) listens on 127.0.0.1:`port`. Raises RuntimeError
    if it exits first or is not listening within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ssh exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"ssh -L did not listen on port {port} within {seconds:g} s")


@contextmanager
def _served_blob(mebibytes: int) -> Iterator[tuple[str, int]]:
    """A file of `mebibytes` random MiB that the pod's http.server serves: (path, size)."""
    # Outside /tmp: a test-node container has its own /tmp but sees the rest of the host.
    served = Path(tempfile.mkdtemp(prefix="devspace-bench-", dir="/var/tmp"))
    try:
        served.chmod(0o755)
        blob = served / "blob.bin"
        block = os.urandom(1 << 20)
        with blob.open("wb") as out:
            for _ in range(mebibytes):
                out.write(block)
        blob.chmod(0o644)
        yield str(blob), blob.stat().st_size  # http.server in the pod serves from /
    finally:
        shutil.rmtree(served)


def _throughput(
    connection: Connection, ssh_argv: list[str], runs: int, mebibytes: int, label: str
) -> tuple[list[float], list[float], str | None]:
    """MiB/s through devspace's tunnel on `connection` and OpenSSH's (`ssh_argv` + `-L`),
    alternating which goes first, and who made devspace's gateway hop (`gateway_client`)."""
    with _served_blob(mebibytes) as (path, size), connection:
        ours_port = connection.forward_local(0, "127.0.0.1", 8000).port
        client = connection.gateway_client
        peer_port = free_port()
        argv = [*ssh_argv[:1], "-N", "-L", f"{peer_port}:127.0.0.1:8000", *ssh_argv[1:]]
        ssh = subprocess.Popen(argv)
        try:
            listening(peer_port, ssh)
            fetch(ours_port, "/")  # both tunnels up and warm before timing
            fetch(peer_port, "/")
            ours: list[float] = []
            peer: list[float] = []
            for run, side in turns(runs):
                port = ours_port if side == "ours" else peer_port
                figure = _timed(port, path, size)
                (ours if side == "ours" else peer).append(figure)
                print(f"  {label}, run {run + 1}, {side}: {figure:.0f} MiB/s", file=sys.stderr)
            connection.check()
        finally:
            ssh.terminate()
            ssh.wait(timeout=10)
    return ours, peer, client


def forwarded_port(sidecar: Sidecar, work: Path, runs: int, mebibytes: int) -> Row:
    """Download a `mebibytes` MiB file through each tunnel, one hop, `runs` times each (MiB/s)."""
    ssh = ["ssh", *sidecar.ssh_options(), "-c", CIPHER, "-p", "2222", f"dev@{sidecar.ip}"]
    ours, peer, _ = _throughput(sidecar.connection(), ssh, runs, mebibytes, "tunnel")
    return Row(
        "tunnel",
        f"download of {mebibytes} MiB through a local forward, one hop (MiB/s)",
        Samples(tuple(ours), "MiB/s"),
        "OpenSSH ssh -L",
        Samples(tuple(peer), "MiB/s"),
        goal=0.7,
        higher_is_better=True,
        when=now(),
    )


def forwarded_port_two_hops(route: GatewayRoute, runs: int, mebibytes: int) -> Row:
    """As `forwarded_port`, through the gateway: devspace's two-hop connection against
    `ssh -J gateway -L` (both with the same cipher on both hops). The row names who made
    devspace's gateway hop (`devspace.jump`: OpenSSH's `ssh -W` where there is one)."""
    ssh = ["ssh", "-F", str(route.ssh_config), "-J", route.jump, route.target]
    ours, peer, client = _throughput(route.connection(), ssh, runs, mebibytes, "tunnel-two-hops")
    return Row(
        "tunnel-two-hops",
        f"download of {mebibytes} MiB through a local forward, gateway and sidecar; "
        f"devspace's gateway hop by {_CLIENTS.get(client or '', client)} (MiB/s)",
        Samples(tuple(ours), "MiB/s"),
        "OpenSSH ssh -J -L",
        Samples(tuple(peer), "MiB/s"),
        goal=0.7,
        higher_is_better=True,
        when=now(),
    )


_CLIENTS = {"openssh": "OpenSSH `ssh -W`", "paramiko": "paramiko"}


def _seconds(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def connection_setup(route: GatewayRoute, runs: int) -> Row:
    """Seconds from nothing to a command's exit through both hops: devspace's `Connection`
    (open, authenticate twice, run `true`, close) against `ssh -J gateway sidecar true`."""

    clients: set[str | None] = set()

    def ours() -> None:
        with route.connection() as connection:
            result = connection.run("true")
            clients.add(connection.gateway_client)
        if result.exit_status != 0:
            raise RuntimeError(f"`true` exited {result.exit_status} through devspace")

    def peer() -> None:
        argv = ["ssh", "-F", str(route.ssh_config), "-J", route.jump, route.target, "true"]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    ours()  # both paths warm (the gateway's principals command, the pod's sshd) before timing
    peer()
    figures: dict[str, list[float]] = {"ours": [], "peer": []}
    for run, side in turns(runs):
        figures[side].append(_seconds(ours if side == "ours" else peer))
        print(
            f"  connect, run {run + 1}, {side}: {figures[side][-1] * 1000:.0f} ms", file=sys.stderr
        )
    mine, theirs = figures["ours"], figures["peer"]
    hop = ", ".join(sorted(_CLIENTS.get(c or "", str(c)) for c in clients))
    return Row(
        "connect",
        "connect through gateway and sidecar and run `true` (s; devspace in-process, "
        f"without Python's start-up or the API calls `devspace exec` adds; gateway hop by {hop})",
        Samples(tuple(mine), "s"),
        "OpenSSH ssh -J",
        Samples(tuple(theirs), "s"),
        goal=1.5,
        higher_is_better=False,
        when=now(),
    )
