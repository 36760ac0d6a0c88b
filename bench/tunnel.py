"""A forwarded port's throughput: devspace's `forward_local` against OpenSSH `ssh -L`, one hop.

Both tunnels go to the same sidecar and on to the same server in the pod (the test pod's
`python -m http.server` on 127.0.0.1:8000), and the same client reads the same file through
each. Only the tunnel differs. Two hops through the gateway are not measured yet.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bed import Sidecar
from bench.report import Row, Samples, now
from bench.sync import CIPHER

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


def _listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ssh -L exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("ssh -L did not listen within 15 s")


def forwarded_port(sidecar: Sidecar, work: Path, runs: int, mebibytes: int) -> Row:
    """Download a `mebibytes` MiB file through each tunnel, `runs` times each (MiB/s)."""
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
        size = blob.stat().st_size
        path = str(blob)  # http.server in the pod serves from /

        with sidecar.connection() as connection:
            ours_port = connection.forward_local(0, "127.0.0.1", 8000).port
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                peer_port = probe.getsockname()[1]
            argv = ["ssh", *sidecar.ssh_options(), "-c", CIPHER, "-N"]
            argv += ["-o", "ExitOnForwardFailure=yes", "-L", f"{peer_port}:127.0.0.1:8000"]
            ssh = subprocess.Popen([*argv, "-p", "2222", f"dev@{sidecar.ip}"])
            try:
                _listening(peer_port, ssh)
                fetch(ours_port, "/")  # both tunnels up and warm before timing
                fetch(peer_port, "/")
                ours: list[float] = []
                peer: list[float] = []
                for run in range(runs):
                    for side in ("ours", "peer") if run % 2 == 0 else ("peer", "ours"):
                        port = ours_port if side == "ours" else peer_port
                        figure = _timed(port, path, size)
                        (ours if side == "ours" else peer).append(figure)
                        print(
                            f"  tunnel, run {run + 1}, {side}: {figure:.0f} MiB/s", file=sys.stderr
                        )
                connection.check()
            finally:
                ssh.terminate()
                ssh.wait(timeout=10)
    finally:
        shutil.rmtree(served)
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
