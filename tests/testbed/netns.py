"""Pod networking for the test node (test infrastructure): a bridge, and a netns per pod.

Each running test node owns a *slot* k: the bridge `dstb<k>-br` holding 10.213.k.1/24 on the
host, and pods in network namespaces `dstb<k>-<pod uid>` joined to it by veth pairs
`dstb<k>-v<n>` / `eth0`. Host processes reach pod IPs through the bridge; pods reach the host
(10.213.k.1) and each other, and nothing else: there is no default route and nothing is
forwarded. Slots let several test sessions share one machine, and the records in
/run/devspace-testbed let a new node clean up after one that crashed.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "dstb"
RUN = Path("/run/devspace-testbed")
NETNS_DIR = Path("/run/netns")
_OWNED = re.compile(rf"^{PREFIX}(\d+)-")
_SLOTS = 256


class NetworkError(RuntimeError):
    """An `ip` command failed; the message carries its output."""


def ip(*args: str, stdin: str | None = None, check: bool = True) -> str:
    """Run iproute2's `ip` and return its output; raises NetworkError on failure if `check`."""
    result = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip() or result.stdout}")
    return result.stdout


def _write_sysctl(path: str, value: str) -> None:
    with contextlib.suppress(OSError), open(path, "w") as f:
        f.write(value)


@dataclass
class PodNetwork:
    """One pod's network namespace and address."""

    netns: str
    veth: str
    address: ipaddress.IPv4Address

    @property
    def netns_path(self) -> Path:
        """The bind-mounted namespace file that processes join with setns()."""
        return NETNS_DIR / self.netns

    def processes(self) -> list[int]:
        """PIDs of the live processes in this network namespace (what `ip netns pids` says)."""
        try:
            namespace = self.netns_path.stat()
        except FileNotFoundError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    net = os.stat(f"/proc/{entry}/ns/net")
                except OSError:
                    continue  # gone meanwhile, or a zombie, which has no namespaces left
                if (net.st_dev, net.st_ino) == (namespace.st_dev, namespace.st_ino):
                    found.append(int(entry))
        return found


@dataclass
class Bridge:
    """The test node's bridge and its /24; hands out pod addresses round-robin."""

    slot: int
    _next: int = 2
    _used: set[int] = field(default_factory=set)
    _veths: int = 0

    @property
    def name(self) -> str:
        """The bridge's interface name."""
        return f"{PREFIX}{self.slot}-br"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        """The pods' subnet."""
        return ipaddress.IPv4Network(f"10.213.{self.slot}.0/24")

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The host's address on the bridge (the node's InternalIP)."""
        return self.subnet.network_address + 1

    @classmethod
    def claim(cls) -> Bridge:
        """Take the lowest free slot, clean up after dead owners, and create the bridge.

        Raises NetworkError when every slot is held by a live node or `ip` fails.
        """
        RUN.mkdir(parents=True, exist_ok=True)
        with _locked():
            live = _live_slots()
            cleanup_orphans(keep=live)
            slot = next((k for k in range(_SLOTS) if k not in live), None)
            if slot is None:
                raise NetworkError("every test-node slot is in use")
            bridge = cls(slot)
            _record(slot).write_text(
                json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid())})
            )
        # A bridge that carried our pods' traffic only: no IPv6 chatter, no STP delay.
        ip("link", "add", bridge.name, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{bridge.name}/disable_ipv6", "1")
        ip("addr", "add", f"{bridge.gateway}/24", "dev", bridge.name)
        ip("link", "set", bridge.name, "up")
        return bridge

    def release(self) -> None:
        """Remove every namespace and link of this slot, the bridge, and the slot record."""
        release_slot(self.slot, os.getpid())

    def attach(self, pod_uid: str) -> PodNetwork:
        """Create a netns for a pod (loopback up) with eth0 on the bridge; returns it."""
        number = self._allocate()
        network = PodNetwork(
            netns=f"{PREFIX}{self.slot}-{pod_uid[:13]}",
            veth=f"{PREFIX}{self.slot}-v{number}",
            address=self.subnet.network_address + number,
        )
        try:
            ip("netns", "add", network.netns)
            ip(
                "link",
                "add",
                network.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                network.netns,
            )
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{network.veth}/disable_ipv6", "1")
            ip("link", "set", network.veth, "master", self.name, "up")
            ip(
                "-n",
                network.netns,
                "-batch",
                "-",
                stdin=(
                    f"addr add {network.address}/24 dev eth0\nlink set lo up\nlink set eth0 up\n"
                ),
            )
        except NetworkError:
            self.detach(network)
            raise
        return network

    def detach(self, network: PodNetwork) -> None:
        """Remove a pod's netns and veth and forget its address (idempotent)."""
        ip("netns", "del", network.netns, check=False)
        ip("link", "del", network.veth, check=False)
        # The next pod to get this address has another MAC; forget the old one now.
        ip("neigh", "flush", "to", str(network.address), "dev", self.name, check=False)
        self._used.discard(int(network.address) - int(self.subnet.network_address))

    def _allocate(self) -> int:
        # Round-robin, so an address is reused only after the whole /24 has gone round.
        for _ in range(253):
            number = self._next
            self._next = 2 if number >= 254 else number + 1
            if number not in self._used:
                self._used.add(number)
                return number
        raise NetworkError(f"no free address in {self.subnet}")


def release_slot(slot: int, owner: int) -> None:
    """Clean up `slot` if the node with PID `owner` still holds it (it may have died).

    A slot whose owner died may already belong to another node, which must keep it.
    """
    with _locked():
        try:
            holder = json.loads(_record(slot).read_text()).get("pid")
        except (OSError, ValueError):
            return  # released already
        if holder == owner:
            cleanup_slot(slot)


def cleanup_slot(slot: int) -> None:
    """Remove everything named for `slot` and its record (for a node that stopped or died)."""
    for netns in _netns_names():
        if netns.startswith(f"{PREFIX}{slot}-"):
            ip("netns", "del", netns, check=False)
    for link in _link_names():
        if link.startswith(f"{PREFIX}{slot}-"):
            ip("link", "del", link, check=False)
    _record(slot).unlink(missing_ok=True)


def cleanup_orphans(keep: set[int]) -> None:
    """Remove namespaces and links of every slot not in `keep` (their owners are gone)."""
    slots = {int(m.group(1)) for n in _netns_names() + _link_names() if (m := _OWNED.match(n))}
    slots |= {int(p.stem.removeprefix("slot-")) for p in RUN.glob("slot-*.json")}
    for slot in slots - keep:
        cleanup_slot(slot)


def _netns_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _link_names() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


def _record(slot: int) -> Path:
    return RUN / f"slot-{slot}.json"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks; tells a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _live_slots() -> set[int]:
    live = set()
    for record in RUN.glob("slot-*.json"):
        try:
            owner = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if owner.get("start") and _start_time(int(owner["pid"])) == owner["start"]:
            live.add(int(record.stem.removeprefix("slot-")))
    return live


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with open(RUN / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
