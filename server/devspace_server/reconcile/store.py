"""The seam between the reconciler and the database: `SpaceStore`.

The reconciler keeps no state of its own; it asks the store what should exist and tells it
what it saw. The database-backed store implements this protocol; `MemorySpaceStore` is the
same contract in memory, for tests and for the benchmark.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from devspace_server.kube.spec import SpaceSpec
from devspace_server.reconcile.status import SpaceStatus


class SpaceStore(Protocol):
    """Desired state in, observed state out. Implementations must be thread-safe."""

    def desired_spaces(self) -> list[SpaceSpec]:
        """Every space that should exist (created, not deleted), running or stopped."""
        ...

    def desired_space(self, space_id: str) -> SpaceSpec | None:
        """The space with this id if it should exist; None when deleted or unknown."""
        ...

    def deleted_spaces(self) -> list[str]:
        """Ids of spaces deleted in the store whose namespace is not yet confirmed gone."""
        ...

    def write_status(self, space_id: str, status: SpaceStatus) -> None:
        """Record what the reconciler observed for a space (desired or being deleted)."""
        ...

    def mark_finalized(self, space_id: str) -> None:
        """Record that a deleted space's namespace is gone; it leaves `deleted_spaces`."""
        ...


@dataclass
class MemorySpaceStore:
    """An in-memory SpaceStore: `put` and `delete` play the API's part."""

    spaces: dict[str, SpaceSpec] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    finalized: set[str] = field(default_factory=set)
    statuses: dict[str, SpaceStatus] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def put(self, spec: SpaceSpec) -> None:
        """Create or change a space (ids are never reused, so a deleted id is refused)."""
        with self._lock:
            if spec.space_id in self.deleted or spec.space_id in self.finalized:
                raise ValueError(f"space id {spec.space_id} was deleted and is never reused")
            self.spaces[spec.space_id] = spec

    def delete(self, space_id: str) -> None:
        """Mark a space deleted; the reconciler finalizes it."""
        with self._lock:
            self.spaces.pop(space_id, None)
            self.deleted.add(space_id)

    # The SpaceStore methods; their contracts are on the protocol above.

    def desired_spaces(self) -> list[SpaceSpec]:
        with self._lock:
            return list(self.spaces.values())

    def desired_space(self, space_id: str) -> SpaceSpec | None:
        with self._lock:
            return self.spaces.get(space_id)

    def deleted_spaces(self) -> list[str]:
        with self._lock:
            return sorted(self.deleted)

    def write_status(self, space_id: str, status: SpaceStatus) -> None:
        with self._lock:
            self.statuses[space_id] = status

    def mark_finalized(self, space_id: str) -> None:
        with self._lock:
            self.deleted.discard(space_id)
            self.finalized.add(space_id)
