"""`devspace exec`: the CLI as its own process, through the real gateway into the sidecar."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest

from .conftest import CLI, SPACE, Result

pytestmark = [pytest.mark.kube, pytest.mark.node]

Cli = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["true"], 0),
        (["sh", "-c", "exit 7"], 7),
        (["false"], 1),
        # Killed by a signal: 128+N, as a shell reports it (paramiko alone would say -1).
        (["sh", "-c", "kill -KILL $$"], 137),
        (["sh", "-c", "kill -TERM $$"], 143),
    ],
    ids=["zero", "seven", "false", "SIGKILL", "SIGTERM"],
)
def test_the_remote_exit_status_is_the_exit_code(cli: Cli, command: list[str], status: int) -> None:
    result = cli("exec", SPACE, "--", *command)
    assert result.returncode == status, result.stderr


def test_stdin_stdout_and_stderr_are_streamed_as_bytes(cli: Cli) -> None:
    data = os.urandom(3 * 1024 * 1024) + b"\0\r\n\xff"  # several windows' worth, any bytes
    result = cli("exec", "--", "sh", "-c", "cat; printf 'to stderr\\0' >&2", stdin=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    assert result.stderr == b"to stderr\0"


def test_without_dashes_the_words_are_the_command_in_the_default_space(cli: Cli) -> None:
    result = cli("exec", "--no-stdin", "sh", "-c", "echo $PWD; cat")
    assert (result.returncode, result.stdout) == (0, b"/workspace\n"), result.stderr


def test_one_word_is_a_shell_line(cli: Cli) -> None:
    result = cli("exec", SPACE, "--", "echo a  b | tr a-z A-Z && exit 3")
    assert (result.returncode, result.stdout) == (3, b"A B\n"), result.stderr


def test_a_closed_stdout_ends_the_command_quietly(cli: Cli) -> None:
    # `devspace exec -- yes | head -c 6`: the reader leaves, as in a shell pipeline.
    process = subprocess.Popen(
        [*CLI, "exec", "--", "yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stdout.read(6) == b"y\ny\ny\n"
        process.stdout.close()
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == 141
    assert b"Traceback" not in stderr


def test_an_unknown_space_is_a_clear_error(devspace: Callable[..., Result]) -> None:
    result = devspace("exec", "nosuch", "--", "true")
    assert result.code == 4
    assert "nosuch" in result.err
    assert "Traceback" not in result.err


def test_no_command_is_a_usage_error(devspace: Callable[..., Result]) -> None:
    result = devspace("exec", SPACE, "--")
    assert result.code == 2
    assert "what should run?" in result.err
