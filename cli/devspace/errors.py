"""The CLI's user-facing errors: one root, caught in one place, mapped to documented exit codes.

Exit codes (the same for every command, so scripts can tell failures apart):

====  ===================================================================
0     success
1     any other error (`DevspaceError`)
2     usage: wrong arguments or a bad configuration file (`UsageError`)
3     authentication: not logged in, refused or expired credentials (`AuthError`)
4     the devspace server answered with an error (`ServerError`)
5     SSH or network: unreachable, refused, host key mismatch (`SshError`)
130   interrupted by the user (`Interrupted`)
====  ===================================================================

Library exceptions (paramiko, socket, HTTP) are converted into these at the edge and raised
``from`` the original, so the debug log keeps the cause while the user sees only the message.
"""

from __future__ import annotations


class DevspaceError(Exception):
    """Root of every error the CLI reports to a person; its message says what to do next."""

    exit_code = 1


class UsageError(DevspaceError):
    """The command line or a configuration file is wrong."""

    exit_code = 2


class AuthError(DevspaceError):
    """Credentials are missing, expired or refused (OAuth tokens or SSH certificates)."""

    exit_code = 3


class ServerError(DevspaceError):
    """The devspace server answered, but with an error."""

    exit_code = 4


class NotFound(ServerError):
    """The server has no such thing: a mistyped name, or a space deleted meanwhile. Waiting
    and retrying cannot help, so reconnect loops end on it."""


class SshError(DevspaceError):
    """An SSH connection, channel or tunnel failed, or the network did not get us there."""

    exit_code = 5


class Interrupted(DevspaceError):
    """The user interrupted the command (Ctrl-C)."""

    exit_code = 130
