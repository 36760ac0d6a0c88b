"""`channels.splice`, the byte pump of every forwarded connection, when its SSH side dies.

The channel here is a stand-in over a socket pair: the failure under test — closing a channel
whose transport died between the pump's last read and its close, which paramiko reports with
EOFError — is a race the real gateway tests hit only now and then (a killed `ssh -W`).
"""

from __future__ import annotations

import socket
import threading

import pytest

from devspace.channels import splice


class DeadTransportChannel:
    """Reads and writes like a channel; its close fails as paramiko's does on a dead transport."""

    def __init__(self, end: socket.socket) -> None:
        self.end = end
        self.close_attempts = 0

    def fileno(self) -> int:
        return self.end.fileno()

    def recv(self, size: int) -> bytes:
        return self.end.recv(size)

    def sendall(self, data: bytes) -> None:
        self.end.sendall(data)

    def shutdown_write(self) -> None:
        self.end.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.close_attempts += 1
        self.end.close()
        raise EOFError


def test_a_channel_that_fails_to_close_ends_only_its_connection(
    recwarn: pytest.WarningsRecorder,
) -> None:
    client, local_app = socket.socketpair()
    ssh_side, remote_app = socket.socketpair()
    channel = DeadTransportChannel(ssh_side)
    failures: list[BaseException] = []

    def pump() -> None:
        try:
            splice(client, channel, threading.Event())  # type: ignore[arg-type]
        except BaseException as error:  # what would reach threading's excepthook
            failures.append(error)

    thread = threading.Thread(target=pump)
    thread.start()
    local_app.sendall(b"request")
    assert remote_app.recv(100) == b"request"
    remote_app.sendall(b"answer")
    assert local_app.recv(100) == b"answer"
    remote_app.close()  # the far side goes away: the pump ends and closes both ends
    local_app.shutdown(socket.SHUT_WR)
    thread.join(5)

    assert not thread.is_alive()
    assert failures == []
    assert channel.close_attempts == 1
    assert local_app.recv(100) == b""  # the local client was closed too
    local_app.close()
