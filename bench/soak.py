"""The soak (issue 9): a tunnel through the gateway and the sidecar held open, idle for most
of the time, then loaded, with no drop; side by side with OpenSSH `ssh -J -N -L`.

Both tunnels are opened at the start and held for the whole soak, on the same hops (the real
gateway pod, then the sidecar) to the pod's HTTP server on 127.0.0.1:8000: ours a two-hop
`Connection` with `forward_local`, the peer `ssh -F config -J devspace@gateway -N -L`. For
the first five sixths of the time nothing crosses either tunnel (only the SSH keepalives of
each side and each server); every second the bench looks, locally only, whether each is still
up (our connection's transports active, the ssh process alive). Then for the last sixth
both carry downloads of a `MEBIBYTES` MiB file, taking turns, each by a new client process
(as a browser or curl would). A drop is a tunnel found down; a failed request is a download
that did not arrive whole. Neither side reconnects by itself (a `Connection` does not, nor
does `ssh -N`), so a drop would also fail every later request.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.gateway import GatewayRoute
from bench.report import Row, Samples, now
from bench.tunnel import fetch, listening
from devspace.errors import DevspaceError
from testbed.process import free_port

MEBIBYTES = 32


@dataclass
class Side:
    """What one tunnel went through."""

    served: int = 0
    failed: int = 0
    dropped_at: float | None = None  # seconds into the soak when it was found down
    first_after_idle: float | None = None  # seconds for the first download after the idle
    throughput: list[float] = field(default_factory=list)  # MiB/s of each whole download
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.served + self.failed

    def summary(self) -> str:
        dropped = "no drop" if self.dropped_at is None else f"dropped at {self.dropped_at:.0f} s"
        return f"{self.served} of {self.requests} downloads served, {dropped}"


@contextmanager
def _served_blob() -> Iterator[tuple[str, int]]:
    # Outside /tmp: a test-node container has its own /tmp but sees the rest of the host.
    served = Path(tempfile.mkdtemp(prefix="devspace-bench-soak-", dir="/var/tmp"))
    try:
        served.chmod(0o755)
        blob = served / "blob.bin"
        blob.write_bytes(os.urandom(MEBIBYTES << 20))
        blob.chmod(0o644)
        yield str(blob), blob.stat().st_size  # the pod's http.server serves from /
    finally:
        shutil.rmtree(served)


def _download(side: Side, port: int, path: str, size: int) -> None:
    try:
        received, seconds = fetch(port, path)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        side.failed += 1
        side.errors.append(str(error)[:200])
        return
    if received < size:
        side.failed += 1
        side.errors.append(f"{received} bytes of {size}")
        return
    side.served += 1
    side.throughput.append(size / (1 << 20) / seconds)
    if side.first_after_idle is None:
        side.first_after_idle = seconds


def soak(route: GatewayRoute, minutes: float) -> tuple[list[Row], list[str]]:
    """Hold both tunnels for `minutes`: idle for five sixths, downloads for the last sixth."""
    total = minutes * 60
    idle = total * 5 / 6
    sides = {"ours": Side(), "peer": Side()}
    connection = route.connection()
    port = free_port()
    argv = ["ssh", "-F", str(route.ssh_config), "-J", route.jump, "-N"]
    argv += ["-L", f"{port}:127.0.0.1:8000", route.target]
    with _served_blob() as (path, size), connection:
        ports = {"ours": connection.forward_local(0, "127.0.0.1", 8000).port, "peer": port}
        ssh = subprocess.Popen(argv)
        try:
            listening(port, ssh, seconds=30)
            for side in ("ours", "peer"):  # both carry one download before the idle
                received, _ = fetch(ports[side], path)
                if received < size:
                    raise RuntimeError(f"the {side} tunnel did not work before the soak")
            # Who made our gateway hop (paramiko, or OpenSSH's `ssh -W` where the devspace in
            # this tree uses it): a drop would be that hop's as much as ours.
            client = getattr(connection, "gateway_client", None) or "paramiko"

            def look(at: float) -> None:
                try:
                    connection.check()
                except DevspaceError as error:
                    if sides["ours"].dropped_at is None:
                        sides["ours"].dropped_at = at
                        sides["ours"].errors.append(str(error))
                if ssh.poll() is not None and sides["peer"].dropped_at is None:
                    sides["peer"].dropped_at = at

            started = time.monotonic()
            print(f"  soak: both tunnels idle for {idle / 60:.1f} min", file=sys.stderr)
            while (at := time.monotonic() - started) < idle:
                look(at)
                time.sleep(1)
            print(f"  soak: downloads for {(total - idle) / 60:.1f} min", file=sys.stderr)
            turn = 0
            while (at := time.monotonic() - started) < total:
                for side in ("ours", "peer") if turn % 2 == 0 else ("peer", "ours"):
                    _download(sides[side], ports[side], path, size)
                look(at)
                turn += 1
            look(time.monotonic() - started)
        finally:
            ssh.terminate()
            ssh.wait(timeout=10)
    rows, notes = _rows(sides, minutes, idle)
    return rows, [*notes, f"soak: devspace's gateway hop made by {client}"]


def _rows(sides: dict[str, Side], minutes: float, idle: float) -> tuple[list[Row], list[str]]:
    ours, peer = sides["ours"], sides["peer"]
    when = now()

    def percent(side: Side) -> float:
        served = side.served if side.dropped_at is None else 0
        return 100 * served / max(side.requests, 1)

    rows = [
        Row(
            "soak",
            f"{minutes:g} min through gateway and sidecar, idle {idle / 60:.1f} min then "
            f"{MEBIBYTES} MiB downloads: share served with no drop (%); ours {ours.summary()}; "
            f"OpenSSH ssh -J -N -L {peer.summary()}",
            Samples((percent(ours),), "%"),
            "goal (issue 9): no drop",
            Samples((100.0,), "%"),
            1.0,
            True,
            when,
        )
    ]
    if ours.throughput and peer.throughput:
        rows.append(
            Row(
                "soak-throughput",
                "the soak's downloads after the idle, through gateway and sidecar (MiB/s)",
                Samples(tuple(ours.throughput), "MiB/s"),
                "OpenSSH ssh -J -N -L",
                Samples(tuple(peer.throughput), "MiB/s"),
                None,
                True,
                when,
            )
        )
    notes = []
    for name, side in (("ours", ours), ("OpenSSH", peer)):
        first = "none" if side.first_after_idle is None else f"{side.first_after_idle:.2f} s"
        errors = "; ".join(side.errors[:3]) or "none"
        notes.append(
            f"soak, {name}: {side.summary()}; first download after the idle {first}; "
            f"errors: {errors}"
        )
    return rows, notes
