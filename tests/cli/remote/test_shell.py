"""`devspace ssh` / `enter`: the CLI in a real PTY (pexpect), a real PTY in the sidecar."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pexpect
import pytest

from .conftest import CLI, SPACE, Bed

pytestmark = [pytest.mark.kube, pytest.mark.node]


def spawn(*args: str, rows: int = 24, columns: int = 80, prompt: bool = True) -> pexpect.spawn:
    child = pexpect.spawn(
        CLI[0],
        [*CLI[1:], *args],
        env={**os.environ, "TERM": "xterm"},
        dimensions=(rows, columns),
        timeout=20,
    )
    if prompt:
        child.expect(r"\$ ")  # the remote shell's prompt
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, child.signalstatus
    return int(child.exitstatus)


def test_a_shell_gets_a_terminal_follows_resizes_and_exits_with_its_status(bed: Bed) -> None:
    child = spawn("ssh", SPACE, rows=24, columns=80)
    try:
        # Arithmetic in the command, so the echo of what we typed cannot match.
        child.sendline("echo pwd=$PWD; tty; stty size; echo ready$((6*7))")
        child.expect(r"pwd=(\S+)\r\n(\S+)\r\n(\d+ \d+)\r\nready42")
        cwd, tty, size = (group.decode() for group in child.match.groups())
        assert cwd == "/workspace"
        assert tty.startswith("/dev/pts/")
        assert size == "24 80"
        child.setwinsize(40, 132)  # SIGWINCH to the CLI, which tells the remote PTY
        child.sendline("stty size; echo sized$((6*7))")
        child.expect(r"(\d+ \d+)\r\nsized42")
        assert child.match.group(1) == b"40 132"
        # Raw mode: Ctrl-C reaches the remote foreground job, not the CLI.
        child.sendline("sleep 60")
        child.sendintr()
        child.sendline("echo alive$((6*7))")
        child.expect("alive42")
        child.sendline("exit 5")
        assert finish(child) == 5
    finally:
        child.close(force=True)


def test_enter_is_the_same_command(bed: Bed) -> None:
    child = spawn("enter")  # the default space
    try:
        child.sendline("echo in$((6*7)) $USER")
        child.expect("in42 dev")
        # At the prompt, not before: a Ctrl-D that reaches the pod's PTY while bash has not
        # yet set it up for the next line can be lost, and the shell would wait on.
        child.expect(r"\$ ")
        child.sendeof()  # Ctrl-D at the prompt ends the shell
        assert finish(child) == 0
    finally:
        child.close(force=True)


def test_without_a_terminal_the_shell_reads_stdin(
    cli: Callable[..., subprocess.CompletedProcess[bytes]],
) -> None:
    result = cli("ssh", SPACE, stdin=b"echo $PWD\ntty || true\nexit 3\n")
    assert result.returncode == 3, result.stderr
    assert result.stdout == b"/workspace\nnot a tty\n"


def test_exec_with_tty_gives_the_command_a_terminal(bed: Bed) -> None:
    child = spawn(
        "exec", "-t", SPACE, "--", "tty; stty size; exit 4", rows=30, columns=100, prompt=False
    )
    try:
        child.expect(r"(/dev/pts/\d+)\r\n(\d+ \d+)\r\n")
        assert child.match.group(2) == b"30 100"
        assert finish(child) == 4
    finally:
        child.close(force=True)


def test_exec_with_tty_but_no_terminal_is_a_usage_error(
    cli: Callable[..., subprocess.CompletedProcess[bytes]],
) -> None:
    result = cli("exec", "-t", SPACE, "--", "true")
    assert result.returncode == 2
    assert b"--tty needs a terminal" in result.stderr
