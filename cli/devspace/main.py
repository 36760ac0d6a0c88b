"""The `devspace` command: parses arguments and dispatches to one module per verb.

Each verb's module is imported only when that verb runs, so `devspace --help` stays fast. Every
failure is caught here, once: a `DevspaceError` becomes one line on stderr and its exit code
(see `devspace.errors`), a usage error exit code 2, Ctrl-C 130, and anything unforeseen a short
message pointing at the run's debug log rather than a traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from devspace import __version__
from devspace.errors import DevspaceError, Interrupted

# verb -> "module:attribute"; the order here is the order in `--help`.
COMMANDS = {
    "login": ("devspace.commands.login:login", "Sign in to a devspace server."),
    "logout": ("devspace.commands.logout:logout", "Sign out of a server and revoke its tokens."),
    "spaces": ("devspace.commands.spaces:spaces", "List, create, stop, start, delete spaces."),
    "status": ("devspace.commands.status:status", "A space's phase, reason and quota usage."),
    "init": ("devspace.commands.init:init", "Write a commented devspace.yaml for this project."),
    "up": ("devspace.commands.up:up", "Start the project's space; ports, sync and a terminal."),
    "down": ("devspace.commands.down:down", "Stop the project's space; its workspace is kept."),
    "ssh": ("devspace.commands.shell:shell", "Open a shell in a space (also: enter)."),
    "enter": ("devspace.commands.shell:shell", "Open a shell in a space (same as ssh)."),
    "exec": ("devspace.commands.execute:execute", "Run a command in a space; its exit status."),
    "forward": ("devspace.commands.forward:forward", "Forward ports to and from a space (-R)."),
    "ssh-config": ("devspace.commands.sshconfig:ssh_config", "OpenSSH config for your spaces."),
    "proxy": ("devspace.commands.proxy:proxy", "ProxyCommand for OpenSSH (see ssh-config)."),
    "sync": ("devspace.commands.sync:sync", "Sync a local folder with a space, both ways."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        module, _, attribute = found[0].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The short help is written here so that `--help` imports no command module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, about) for name, (_, about) in COMMANDS.items()])


class _Run:
    """What the group's options set up for this run."""

    verbose = False
    log_path: Path | None = None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="devspace")
@click.option("--verbose", "-v", is_flag=True, help="Show debug output and tracebacks.")
def cli(verbose: bool) -> None:
    """Develop inside Kubernetes: your own space, synced and tunnelled over SSH.

    Exit codes: 0 ok, 1 error, 2 usage, 3 not logged in or refused, 4 server error,
    5 network or SSH, 130 interrupted. A debug log of each run is kept in the state directory.
    """
    from devspace.output import start_log  # noqa: PLC0415 - not needed for `--help`

    _Run.verbose = verbose
    _Run.log_path = start_log(verbose)


def _report(message: str, error: BaseException | None = None) -> None:
    click.echo(f"devspace: {message}", err=True)
    if error is not None:
        if _Run.log_path is not None:
            import logging  # noqa: PLC0415 - loaded already whenever a log was started

            logging.getLogger("devspace").debug("failed", exc_info=error)
        if _Run.verbose:
            import traceback  # noqa: PLC0415

            traceback.print_exception(error, file=sys.stderr)


def run(args: list[str] | None = None) -> int:  # noqa: PLR0911 - one per exit path
    """Run the CLI with `args` (default: the process's) and return its exit code."""
    try:
        # Not standalone, click returns a command's `ctx.exit(code)` rather than raising it
        # (exec and ssh exit with the remote command's status).
        status = cli.main(args=args, prog_name="devspace", standalone_mode=False)
    except click.exceptions.Abort:
        _report("aborted.")
        return Interrupted.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt as exc:
        _report("interrupted.", exc)
        return Interrupted.exit_code
    except DevspaceError as exc:
        _report(f"error: {exc}", exc)
        return exc.exit_code
    except Exception as exc:
        where = f"; details in {_Run.log_path}" if _Run.log_path else ""
        _report(f"unexpected error ({type(exc).__name__}: {exc}){where}", exc)
        return 1
    finally:
        _finish()
    return status if isinstance(status, int) else 0


def _finish() -> None:
    if "devspace.output" in sys.modules:
        from devspace.output import stop_log  # noqa: PLC0415

        stop_log()
    _Run.verbose, _Run.log_path = False, None


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
