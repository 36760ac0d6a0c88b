"""The `devspace` console script: answers `--help` and `--version` before importing anything.

Python starts in about 8 ms here; importing click alone costs about 15 ms more. The top-level
help and the version are static, so they are written from this module, which imports nothing
beyond `sys`, and click (`devspace.main`) is loaded only for a real command. The verb table
lives here for the same reason: `devspace.main` dispatches from it, and both paths print the
top-level help from `help_text()`, so they cannot disagree.
"""

from __future__ import annotations

import sys

from devspace import __version__

# verb -> ("module:attribute", short help); the order here is the order in `--help`.
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
    "sync": ("devspace.commands.sync:sync", "Sync a local folder with a space, both ways."),
    "ssh-config": ("devspace.commands.sshconfig:ssh_config", "OpenSSH config for your spaces."),
    "proxy": ("devspace.commands.proxy:proxy", "ProxyCommand for OpenSSH (see ssh-config)."),
}

ABOUT = """\
Develop inside Kubernetes: your own space, synced and tunnelled over SSH.

Exit codes: 0 ok, 1 error, 2 usage, 3 not logged in or refused, 4 server
error, 5 network or SSH, 130 interrupted. A debug log of each run is kept in
the state directory."""

# The group's options as `devspace.main.cli` declares them (a test keeps the two equal).
OPTIONS = (
    ("--version", "Show the version and exit."),
    ("-v, --verbose", "Show debug output and tracebacks."),
    ("-h, --help", "Show this message and exit."),
)
HELP = ("-h", "--help")
VERSION = f"devspace, version {__version__}"


def help_text() -> str:
    """The top-level help, as `devspace --help` prints it."""

    def rows(pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[str]:
        width = max(len(name) for name, _ in pairs) + 2
        return [f"  {name.ljust(width)}{about}" for name, about in pairs]

    about = "\n".join(f"  {line}" if line else "" for line in ABOUT.splitlines())
    commands = [(name, short) for name, (_, short) in COMMANDS.items()]
    return "\n".join(
        [
            "Usage: devspace [OPTIONS] COMMAND [ARGS]...",
            "",
            about,
            "",
            "Options:",
            *rows(OPTIONS),
            "",
            "Commands:",
            *rows(commands),
            "",
        ]
    )


def main() -> None:
    """Run `devspace` with the process's arguments; exits with its status."""
    arguments = sys.argv[1:]
    if len(arguments) == 1 and arguments[0] in HELP:
        sys.stdout.write(help_text())
        sys.exit(0)
    if arguments == ["--version"]:
        sys.stdout.write(f"{VERSION}\n")
        sys.exit(0)
    from devspace.main import main as run_command  # noqa: PLC0415 - the point of this module

    run_command()
