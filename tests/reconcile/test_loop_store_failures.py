"""The loop outlives a store that fails (its database restarting), without a cluster."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.exc import OperationalError

from devspace_server.kube.spec import ClusterSettings, SpaceSpec
from devspace_server.reconcile.loop import ReconcileLoop
from devspace_server.reconcile.step import Reconciler
from devspace_server.reconcile.store import MemorySpaceStore
from testbed.eventually import eventually


class FlakyStore(MemorySpaceStore):
    """Fails the first two full reads, as a database does while it restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def desired_spaces(self) -> list[SpaceSpec]:
        self.reads += 1
        if self.reads <= 2:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return super().desired_spaces()


def test_resync_keeps_going_after_the_store_fails() -> None:
    store = FlakyStore()
    cluster: Any = object()  # never reached: no space, no orphan handling
    loop = ReconcileLoop(
        Reconciler(cluster, store, ClusterSettings()), resync_seconds=0.05, orphans=None
    )
    stop = threading.Event()
    resync = threading.Thread(target=loop._resync, args=(stop,))
    resync.start()
    try:
        eventually(lambda: store.reads >= 4, what="resyncs after the failures", timeout=10)
    finally:
        stop.set()
        resync.join(5)
