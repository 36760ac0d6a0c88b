"""`devspace exec [SPACE] -- CMD...`: run a command in the space, stream stdin, stdout and
stderr (bytes, unchanged), and exit with its exit status (128+N if signal N killed it)."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

import click

from devspace.commands.common import server_option, which_server, which_space
from devspace.errors import SshError, UsageError
from devspace.ssh import Connection, RemoteCommand

COMMAND_META = "devspace.command"


class DashDashCommand(click.Command):
    """A command whose arguments after the first `--` are kept whole for the remote side."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta[COMMAND_META] = args[at + 1 :]
            args = args[:at]
        return super().parse_args(ctx, args)


def split_command(ctx: click.Context, given: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """(SPACE, CMD) from `[SPACE] -- CMD...`, or from `CMD...` alone (the default space)."""
    after = ctx.meta.get(COMMAND_META)
    if after is None:
        return None, list(given)
    if len(given) > 1:
        raise UsageError(f"one space before `--`, not {len(given)}: {' '.join(given)}")
    return (given[0] if given else None), list(after)


def connection_for(server: str | None, space: str | None) -> Connection:
    """An unopened connection to `space` (or the default one) on `server` (or the default).

    Raises what `devspace.remote.connect` raises.
    """
    from devspace.api import Api  # noqa: PLC0415 - requests is slow to import
    from devspace.remote import connect  # noqa: PLC0415

    url = which_server(server)
    return connect(Api(url), which_space(url, space))


def _copy_in(process: RemoteCommand, source: BinaryIO) -> None:
    # Stops quietly when the command has gone: what it did not read is its business.
    with contextlib.suppress(SshError, OSError, ValueError):
        while chunk := os.read(source.fileno(), 65536):
            process.write(chunk)
        process.close_stdin()


def _copy_out(
    process: RemoteCommand, read: Callable[[], bytes], sink: BinaryIO, broken: threading.Event
) -> None:
    with contextlib.suppress(SshError):  # the channel was closed under us (below, or lost)
        while chunk := read():
            try:
                sink.write(chunk)
                sink.flush()
            except (BrokenPipeError, ValueError):  # `devspace exec … | head`: the reader left
                # Closing the channel ends the remote command the way SIGPIPE would end it
                # locally: its pipes close, and so does its session.
                broken.set()
                process.close()
                return


def stream(process: RemoteCommand, *, stdin: bool = True) -> int:
    """Stream this process's stdin to `process` and its output to stdout and stderr until it
    exits; return its exit status (141, as for SIGPIPE, if our stdout was closed first).

    Raises `SshError` if the connection ends before the command does.
    """
    broken = threading.Event()
    if stdin:
        threading.Thread(  # a daemon: a read from a terminal cannot be interrupted
            target=_copy_in, args=(process, sys.stdin.buffer), name="stdin", daemon=True
        ).start()
    else:
        process.close_stdin()
    errors = threading.Thread(
        target=_copy_out,
        args=(process, process.read_stderr, sys.stderr.buffer, broken),
        daemon=True,
    )
    errors.start()
    _copy_out(process, process.read, sys.stdout.buffer, broken)
    errors.join()
    if broken.is_set():
        # Stop Python from complaining about the closed pipe when it flushes at exit.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - until exit
        return 141
    status = process.wait()
    if status < 0:
        raise SshError(
            f"the connection ended before `{process.command}` finished; its exit status is unknown"
        )
    return status


@contextlib.contextmanager
def opened(connection: Connection) -> Iterator[Connection]:
    """`connection`, opened, and closed afterwards."""
    with connection:
        connection.open()
        yield connection


@click.command(
    cls=DashDashCommand,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("words", nargs=-1, metavar="[SPACE] -- CMD...")
@click.option(
    "--no-stdin", "-n", is_flag=True, help="Do not read stdin (give the command end-of-file)."
)
@click.option(
    "--tty",
    "-t",
    is_flag=True,
    help="Give the command a terminal (for full-screen programs); needs one here.",
)
@server_option
@click.pass_context
def execute(
    ctx: click.Context, words: tuple[str, ...], no_stdin: bool, tty: bool, server: str | None
) -> None:
    """Run CMD in a space and exit with its exit status.

    stdin, stdout and stderr are streamed as bytes; a command killed by signal N exits
    128+N, as in a shell. Without `--`, all the words are the command and it runs in the
    default space (`devspace spaces use`). CMD runs through the space's shell, so quote
    what your local shell should not expand.
    """
    space, command = split_command(ctx, words)
    if not command:
        raise UsageError("what should run? `devspace exec [SPACE] -- CMD...`")
    # One argument is passed as written (a shell line such as 'cd src && make'); several are
    # quoted, so `exec -- ls 'my file'` means what it says.
    line = command[0] if len(command) == 1 else shlex.join(command)
    if tty:
        from devspace import terminal  # noqa: PLC0415
        from devspace.commands.shell import in_terminal  # noqa: PLC0415 - imports this module

        if not terminal.is_terminal():
            raise UsageError("--tty needs a terminal: stdin and stdout are not one")
    with opened(connection_for(server, space)) as connection:
        if tty:
            status = in_terminal(connection, line)
        else:
            status = stream(connection.exec(line), stdin=not no_stdin)
    ctx.exit(status)
