"""`devspace forward`: local and reverse tunnels through the real gateway, and their recovery
when the gateway pod is deleted and recreated under them."""

from __future__ import annotations

import functools
import http.server
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testbed.eventually import eventually

from .conftest import CLI, PORT, SPACE, Bed, Result

pytestmark = [pytest.mark.kube, pytest.mark.node]

Cli = Callable[..., subprocess.CompletedProcess[bytes]]


class Forwarding:
    """A running `devspace forward` process and the lines it printed."""

    def __init__(self, process: subprocess.Popen[bytes], lines: list[str]) -> None:
        self.process = process
        self.lines = lines
        self.stderr = b""

    @property
    def local_ports(self) -> list[int]:
        return [int(m[1]) for line in self.lines if (m := re.match(r"127\.0\.0\.1:(\d+) ->", line))]


@contextmanager
def forwarding(*args: str, lines: int = 1) -> Iterator[Forwarding]:
    """`devspace forward ARGS`, until its `lines` lines are out; Ctrl-C at the end must make
    it exit 130 without a traceback."""
    process = subprocess.Popen(
        [*CLI, "forward", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while len(printed) < lines:
            ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
            line = process.stdout.readline() if ready else b""
            assert line, f"forward printed {printed} then {process.poll()=}"
            printed.append(line.decode().strip())
        running = Forwarding(process, printed)
        yield running
        process.send_signal(signal.SIGINT)
        _, running.stderr = process.communicate(timeout=15)
        assert process.returncode == 130, running.stderr
        assert b"Traceback" not in running.stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode())


def test_a_forwarded_port_answers_and_ctrl_c_ends_cleanly(bed: Bed) -> None:
    # The sidecar pod's other container serves HTTP on its localhost:8000.
    with forwarding(SPACE, "0:8000") as running:
        assert running.lines == [f"127.0.0.1:{running.local_ports[0]} -> {SPACE}:8000"]
        assert "Directory listing" in get(running.local_ports[0])
        # Several at once, over the one connection.
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda: results.append(get(running.local_ports[0])))
            for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 5
        assert all("Directory listing" in r for r in results)


def ssh_children(pid: int) -> list[int]:
    """The `ssh` processes that process `pid` started (its gateway hops)."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "ssh":
                    found.append(int(child))
            except FileNotFoundError:  # gone meanwhile
                continue
    return found


def test_a_tunnel_recovers_when_its_openssh_gateway_hop_is_killed(bed: Bed) -> None:
    with forwarding(SPACE, "0:8000") as running:
        port = running.local_ports[0]
        assert "Directory listing" in get(port)
        (hop,) = ssh_children(running.process.pid)
        os.kill(hop, signal.SIGKILL)
        eventually(
            lambda: ssh_children(running.process.pid) not in ([], [hop]),
            what="a new gateway hop",
            timeout=20,
        )
        body = eventually(lambda: _answer(port), what="the tunnel to work again", timeout=20)
        assert "Directory listing" in body
    print(running.stderr.decode())  # shown with -s or a failure
    assert b"killed by signal 9" in running.stderr, running.stderr
    assert b"reconnected" in running.stderr, running.stderr


def test_a_killed_devspace_leaves_no_ssh_behind(bed: Bed) -> None:
    process = subprocess.Popen(
        [*CLI, "forward", SPACE, "0:8000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(b"127.0.0.1:")  # connected, forwarding
        (hop,) = ssh_children(process.pid)
        process.kill()  # no chance to clean up: the hop must notice its input end by itself
        process.communicate(timeout=10)
        eventually(lambda: _gone(hop), what="the ssh process to end", timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # An orphan that has exited but that nobody has reaped yet is as good as gone.
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_with_paramiko_for_the_gateway_hop_a_tunnel_works_too(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVSPACE_SSH_CLIENT", "paramiko")
    with forwarding(SPACE, "0:8000") as running:
        assert "Directory listing" in get(running.local_ports[0])
        assert ssh_children(running.process.pid) == []


def test_a_local_port_in_use_is_a_clear_error(bed: Bed, devspace: Callable[..., Result]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = devspace("forward", SPACE, f"{port}:8000")
    assert result.code == 5
    assert f"cannot listen on 127.0.0.1:{port}" in result.err
    assert "choose another local port" in result.err


def test_a_bad_port_spec_is_a_usage_error(bed: Bed, devspace: Callable[..., Result]) -> None:
    result = devspace("forward", SPACE, "80:http")
    assert result.code == 2
    assert "LOCAL[:REMOTE]" in result.err


@pytest.fixture
def laptop_service(tmp_path: Path) -> Iterator[int]:
    """An HTTP server on this computer's loopback, serving `marker`."""
    (tmp_path / "marker").write_text("served from the laptop")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def fetch_in_the_pod(cli: Cli, port: int, path: str) -> subprocess.CompletedProcess[bytes]:
    script = (
        "import sys, urllib.request; "
        f"sys.stdout.write(urllib.request.urlopen('http://localhost:{port}{path}', "
        "timeout=5).read().decode())"
    )
    return cli("exec", SPACE, "--", "python3", "-c", script)


def test_a_reverse_forward_lets_the_pod_reach_the_laptop(
    bed: Bed, cli: Cli, laptop_service: int
) -> None:
    remote_port = 20000 + os.getpid() % 20000
    with forwarding(SPACE, "-R", f"{remote_port}:{laptop_service}") as running:
        assert running.lines == [f"{SPACE}:{remote_port} -> 127.0.0.1:{laptop_service}"]
        result = fetch_in_the_pod(cli, remote_port, "/marker")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"served from the laptop"


def test_a_tunnel_recovers_after_the_gateway_pod_is_replaced(bed: Bed) -> None:
    with forwarding(SPACE, "0:8000") as running:
        port = running.local_ports[0]
        assert "Directory listing" in get(port)
        bed.stop_gateway()
        with pytest.raises(OSError):  # noqa: PT011 - refused, reset or timed out: all fine
            get(port)  # the local port stays ours, but nothing gets through
        bed.start_gateway()  # perhaps at a new address: the CLI re-reads it from the API
        back = time.monotonic()
        body = eventually(lambda: _answer(port), what="the tunnel to work again", timeout=30)
        recovered = time.monotonic() - back
        assert "Directory listing" in body
        # Probes every 5 s, backoff at most 5 s: well within "seconds".
        assert recovered < 15, recovered
    print(running.stderr.decode())  # shown with -s or a failure
    assert b"reconnected" in running.stderr, running.stderr


def _answer(port: int) -> str | None:
    try:
        return get(port)
    except OSError:
        return None


def test_a_tunnel_recovers_after_the_spaces_pod_is_replaced(bed: Bed) -> None:
    with forwarding(SPACE, "0:8000") as running:
        port = running.local_ports[0]
        assert "Directory listing" in get(port)
        bed.replace_space_pod(bed.alice)
        back = time.monotonic()
        body = eventually(lambda: _answer(port), what="the tunnel to work again", timeout=30)
        assert "Directory listing" in body
        assert time.monotonic() - back < 15
    print(running.stderr.decode())  # shown with -s or a failure
    assert b"reconnected" in running.stderr, running.stderr


class Relay:
    """A TCP relay on this computer's loopback to `upstream`, whose open connections can be
    frozen: bytes stop in both directions with no FIN or RST, as when a network path dies
    silently. New connections pass again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.frozen: list[threading.Event] = []
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            frozen = threading.Event()
            self.frozen.append(frozen)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b, frozen), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, frozen: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                if frozen.is_set():
                    frozen.wait()  # never returns while frozen: the bytes are lost
                    return
                sink.sendall(data)
        except OSError:
            return

    def freeze(self) -> None:
        for event in self.frozen:
            event.set()

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_keepalive_probes_notice_a_silently_dead_path_and_reconnect(bed: Bed) -> None:
    relay = Relay((bed.gateway_ip, PORT))
    try:
        with (
            bed.serving(f"127.0.0.1:{relay.port}", bed.gateway_keys_file),
            forwarding(SPACE, "0:8000") as running,
        ):
            port = running.local_ports[0]
            assert "Directory listing" in get(port)
            relay.freeze()  # TCP stays up; nothing more gets through, no reset comes
            frozen = time.monotonic()
            body = eventually(lambda: _answer(port), what="the tunnel to work again", timeout=40)
            assert "Directory listing" in body
            # A probe within 5 s, 8 s for its answer, a new connection; plus one local
            # connection that was stuck on the frozen path meanwhile (get's 5 s timeout).
            assert time.monotonic() - frozen < 25
    finally:
        relay.close()
    assert b"stopped answering" in running.stderr, running.stderr


def test_a_reverse_forward_comes_back_after_the_gateway_pod_is_replaced(
    bed: Bed, cli: Cli, laptop_service: int
) -> None:
    remote_port = 20001 + os.getpid() % 20000
    with forwarding(SPACE, "-R", f"{remote_port}:{laptop_service}") as running:
        assert fetch_in_the_pod(cli, remote_port, "/marker").returncode == 0
        bed.restart_gateway()
        back = time.monotonic()
        eventually(
            lambda: (
                fetch_in_the_pod(cli, remote_port, "/marker").stdout == b"served from the laptop"
            ),
            what="the reverse forward to work again",
            timeout=90,
        )
        recovered = time.monotonic() - back
    print(f"recovered in {recovered:.1f} s", running.stderr.decode())
    assert b"reconnected" in running.stderr, running.stderr
