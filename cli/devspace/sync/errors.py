"""The sync engine's errors: one root, so the CLI can map every foreseeable failure to an exit."""

from __future__ import annotations


class SyncError(Exception):
    """Root of every error the sync engine raises on purpose."""


class ScanError(SyncError):
    """A local tree could not be read at all (its root is missing or not a directory)."""


class ListingError(SyncError):
    """A remote listing is not one that `listing_command` produces: truncated or malformed."""


class StateError(SyncError):
    """The sync state could not be written (the state directory is not writable)."""
