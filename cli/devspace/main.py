"""The `devspace` command: parses arguments and dispatches to one module per verb.

Each verb's module is imported only when that verb runs (the verb table and the top-level help
are in `devspace.entry`, which answers `--help` without loading click at all). Every
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
from devspace.entry import COMMANDS, help_text
from devspace.errors import DevspaceError, Interrupted


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

    def get_help(self, ctx: click.Context) -> str:
        # One text for both ways in (`devspace.entry` prints it without click), and no
        # command module imported to write it.
        return help_text().rstrip("\n")


class _Run:
    """What the group's options set up for this run."""

    verbose = False
    log_path: Path | None = None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="devspace")
@click.option("--verbose", "-v", is_flag=True, help="Show debug output and tracebacks.")
def cli(verbose: bool) -> None:
    """The top-level group; its help is `devspace.entry.help_text()`."""
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
