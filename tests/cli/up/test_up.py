"""`devspace up` and `down` in-process against the whole stack: the real server, a real
reconciler acting as the chart's ServiceAccount, the gateway and the sidecar on the test node.

Each test has its own user, so spaces and quotas never meet. Durations are printed (`-s`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pytest
from kubernetes import client
from ssh.gateway_bed import free_local_port
from stack import Stack

from devspace.api import Api
from devspace.remote import connect

from .conftest import CLI, Result

pytestmark = [pytest.mark.kube, pytest.mark.node]

SHELL = "devspace.test/shell"


def write_project(folder: Path, text: str) -> None:
    (folder / "devspace.yaml").write_text(text)


def shown(stack: Stack, name: str) -> dict[str, Any]:
    found: dict[str, Any] = Api(stack.url).call("GET", f"/spaces/{name}")
    return found


def pods(stack: Stack, space: dict[str, Any]) -> list[client.V1Pod]:
    items = client.CoreV1Api(stack.kube).list_namespaced_pod(space["namespace"]).items
    return [p for p in items if p.metadata.deletion_timestamp is None]


def report(text: str) -> None:
    """Print a measurement past pytest's capture (shown with `-s`)."""
    print(text, file=sys.__stderr__)


def timed(devspace: Callable[..., Result], *args: str) -> tuple[Result, float]:
    started = time.monotonic()
    result = devspace(*args)
    return result, time.monotonic() - started


@pytest.mark.usefixtures("user")
def test_init_then_up_creates_the_space_and_up_again_changes_nothing(
    stack: Stack, devspace: Callable[..., Result], project: Path
) -> None:
    assert devspace("init", "--image", SHELL, "--name", "web").code == 0
    result, took = timed(devspace, "up", "--detach")
    assert result.code == 0, result.err
    assert "Created space 'web'." in result.err
    assert "web: running (" in result.err
    report(f"up on a fresh project: create -> running in {took:.1f} s")
    space = shown(stack, "web")
    assert (space["phase"], space["ready"], space["image"]) == ("running", True, SHELL)
    assert space["command"] == ["sleep", "infinity"]
    (pod,) = pods(stack, space)

    result, took = timed(devspace, "up", "--detach", "--output", "json")
    assert result.code == 0, result.err
    assert "Space 'web' is up to date." in result.err
    assert json.loads(result.out)["phase"] == "running"
    report(f"up again (nothing to do): {took:.2f} s")
    assert took < 5
    assert [p.metadata.uid for p in pods(stack, space)] == [pod.metadata.uid]


@pytest.mark.usefixtures("user")
def test_up_applies_a_changed_file(
    stack: Stack, devspace: Callable[..., Result], project: Path
) -> None:
    write_project(project, f"name: edit\nimage: {SHELL}\ncommand: [sleep, infinity]\n")
    assert devspace("up", "-d").code == 0
    (old,) = pods(stack, shown(stack, "edit"))
    write_project(
        project,
        f"name: edit\nimage: {SHELL}\ncommand: [sleep, infinity]\nenv: {{GREETING: hello}}\n"
        "storage: 3Gi\n",
    )
    result = devspace("up", "-d")
    assert result.code == 0, result.err
    assert "Updating space 'edit' (env)" in result.err
    assert "its size cannot change after the space is created" in result.err
    space = shown(stack, "edit")
    assert space["env"] == {"GREETING": "hello"}
    # `up` returned once the new pod ran, not while the old one still did (the status can
    # show the old pod running for a moment after the change).
    (new,) = pods(stack, space)
    assert new.metadata.uid != old.metadata.uid
    assert space["pod_ip"] == new.status.pod_ip
    (dev,) = [c for c in new.spec.containers if c.name == "dev"]
    assert {(e.name, e.value) for e in dev.env or []} >= {("GREETING", "hello")}
    with connect(Api(stack.url), "edit") as connection:
        assert connection.run("true").exit_status == 0


@pytest.mark.usefixtures("user")
def test_down_stops_the_pod_and_the_workspace_survives(
    stack: Stack, devspace: Callable[..., Result], project: Path
) -> None:
    write_project(project, f"name: keep\nimage: {SHELL}\ncommand: [sleep, infinity]\n")
    assert devspace("up", "-d").code == 0
    with (
        connect(Api(stack.url), "keep") as connection,
        connection.sftp().open("/workspace/notes.txt", "w") as file,
    ):
        file.write(b"written before down\n")
    space = shown(stack, "keep")

    result, took = timed(devspace, "down", "--output", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["stopped"] is True
    report(f"down: {took:.1f} s")
    stopped = shown(stack, "keep")
    assert (stopped["phase"], stopped["stopped"]) == ("stopped", True)
    assert not pods(stack, space)
    assert "stopped already" in devspace("down").err

    result, took = timed(devspace, "up", "-d")
    assert result.code == 0, result.err
    assert "Starting space 'keep'." in result.err
    report(f"up after down: stopped -> running in {took:.1f} s")
    with connect(Api(stack.url), "keep") as connection:
        assert connection.run("cat /workspace/notes.txt").stdout == b"written before down\n"


def test_a_quota_that_forbids_the_space_fails_at_once_with_the_reason(
    stack: Stack, devspace: Callable[..., Result], project: Path, user: str
) -> None:
    stack.admin("PUT", f"/api/v1/admin/users/{stack.user_id(user)}/quota", json={"spaces": 0})
    write_project(project, f"name: nope\nimage: {SHELL}\ncommand: [sleep, infinity]\n")
    result, took = timed(devspace, "up", "-d")
    assert result.code == 4
    assert "your quota allows 0" in result.err
    assert "Traceback" not in result.err
    assert took < 5


def test_a_pod_the_quota_no_longer_fits_fails_fast_with_the_reason(
    stack: Stack, devspace: Callable[..., Result], project: Path, user: str
) -> None:
    write_project(project, f"name: tight\nimage: {SHELL}\ncommand: [sleep, infinity]\n")
    assert devspace("up", "-d").code == 0
    assert devspace("down").code == 0
    # An admin lowers the quota below what the pod requests; its next start is refused by
    # the cluster (the ResourceQuota), and `up` says so rather than wait.
    stack.admin(
        "PUT",
        f"/api/v1/admin/users/{stack.user_id(user)}/quota",
        json={"requests_memory": "16Mi"},
    )
    result, took = timed(devspace, "up", "-d", "--timeout", "120")
    report(f"quota refusal reported after {took:.1f} s")
    assert result.code == 4, result.err
    assert "space tight cannot run: quota-exceeded:" in result.err
    assert "ask an admin to raise your quota" in result.err
    assert took < 60


@pytest.mark.usefixtures("user")
def test_an_image_that_cannot_be_pulled_fails_with_the_reason(
    devspace: Callable[..., Result], project: Path
) -> None:
    write_project(project, "name: typo\nimage: devspace.test/no-such-image\n")
    result, took = timed(devspace, "up", "-d")
    assert result.code == 4, result.err
    assert "space typo cannot run: image-pull: devspace.test/no-such-image" in result.err
    assert "check the image name" in result.err
    report(f"image pull failure reported after {took:.1f} s")


@pytest.mark.usefixtures("user")
def test_a_wrong_file_is_a_usage_error_naming_the_line(
    devspace: Callable[..., Result], project: Path
) -> None:
    write_project(project, "name: x\nimage: y\nports: [80, 99999]\n")
    result = devspace("up")
    assert result.code == 2
    assert "devspace.yaml:3: ports[1]: 99999 is more than the maximum, 65535" in result.err
    (project / "devspace.yaml").unlink()
    result = devspace("up")
    assert result.code == 2
    assert "devspace init" in result.err


@pytest.mark.usefixtures("user")
def test_up_without_ports_or_sync_has_nothing_to_hold(
    devspace: Callable[..., Result], project: Path
) -> None:
    write_project(project, f"name: bare\nimage: {SHELL}\ncommand: [sleep, infinity]\nsync: []\n")
    result = devspace("up", "--no-terminal")
    assert result.code == 0, result.err
    assert "Nothing to forward or sync; `devspace ssh bare` opens a shell." in result.err


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.usefixtures("user")
def test_up_without_a_terminal_forwards_and_syncs_until_ctrl_c(
    stack: Stack,
    spawn: Callable[..., subprocess.Popen[str]],
    project: Path,
    devspace: Callable[..., Result],
) -> None:
    local = free_local_port()
    write_project(
        project,
        "name: serve\nimage: devspace.test/http-server\n"
        f"ports:\n  - {{port: 8000, local: {local}, name: http}}\n"
        "sync:\n  local: src\n  remote: /workspace/src\n",
    )
    (project / "src").mkdir()
    (project / "src" / "hello.txt").write_text("from the laptop\n")
    process = spawn("up")  # stdin is not a terminal: ports and sync, no shell
    deadline = time.monotonic() + 120
    while not answers(local):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the forwarded port never answered"
        time.sleep(0.5)

    def synced() -> bytes:
        with connect(Api(stack.url), "serve") as connection:
            return connection.run("cat /workspace/src/hello.txt 2>/dev/null").stdout

    while synced() != b"from the laptop\n":
        assert process.poll() is None, process.communicate()
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the file never reached the space; up said: {process.communicate()[1]}")
        time.sleep(0.5)

    with connect(Api(stack.url), "serve") as connection:
        connection.run("echo from the pod > /workspace/src/back.txt")
    back = project / "src" / "back.txt"
    while not back.exists() or back.read_text() != "from the pod\n":
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the pod's file never reached this computer"
        time.sleep(0.5)

    # `devspace status` in another terminal tells what the running `up` does.
    shown = devspace("status", "serve")
    while "<-> /workspace/src: idle" not in shown.out:
        assert time.monotonic() < deadline, shown.out
        time.sleep(0.5)
        shown = devspace("status", "serve")
    assert f"ports:   127.0.0.1:{local} -> 8000 (http); forwarding (pid {process.pid})" in shown.out

    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "ports:" not in devspace("status", "serve").out
    assert f"forwarding 127.0.0.1:{local} to port 8000 (http)" in err
    assert "Press Ctrl-C to stop." in err
    assert "<-> /workspace/src: idle" in err
    assert "Traceback" not in err
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", local), timeout=2).close()


@pytest.mark.usefixtures("user")
def test_up_on_a_terminal_opens_a_shell_and_leaving_it_ends_everything(project: Path) -> None:
    local = free_local_port()
    write_project(
        project,
        "name: term\nimage: devspace.test/http-server\n"
        f"ports: [{{port: 8000, local: {local}}}]\nsync: []\n",
    )
    child = pexpect.spawn(
        CLI[0],
        [*CLI[1:], "up"],
        env={**os.environ, "TERM": "xterm"},
        dimensions=(24, 80),
        timeout=120,
    )
    try:
        child.expect(r"\$ ")  # the space's shell prompt
        # Arithmetic in the command, so the echo of what we typed cannot match.
        child.sendline("echo pwd=$PWD in$((6*7))")
        child.expect(r"pwd=(\S+) in42", timeout=20)
        assert child.match.group(1) == b"/workspace"
        assert answers(local)  # the port is forwarded while the shell is open
        child.sendline("exit 3")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", local), timeout=2).close()
