"""The sync engine's errors: one root, so the CLI can map every foreseeable failure to an exit.

The root is a `DevspaceError`, so the CLI reports each as one line (exit 1; a dropped
connection exits 5, as other SSH failures do).
"""

from __future__ import annotations

from devspace.errors import DevspaceError


class SyncError(DevspaceError):
    """Root of every error the sync engine raises on purpose."""


class ScanError(SyncError):
    """A local tree could not be read at all (its root is missing or not a directory)."""


class ListingError(SyncError):
    """A remote listing is not one that `listing_command` produces: truncated or malformed."""


class StateError(SyncError):
    """The sync state could not be written (the state directory is not writable)."""
