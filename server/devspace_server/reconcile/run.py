"""The reconciler process: leader election around the reconcile loop.

`run` is what `devspace-server reconcile` (and `serve`, for the embedded default) calls once
the database-backed store exists; it returns when `stop` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from kubernetes import client

from devspace_server.kube.spec import ClusterSettings
from devspace_server.reconcile.cluster import Cluster
from devspace_server.reconcile.leader import LeaderElector
from devspace_server.reconcile.loop import ReconcileLoop
from devspace_server.reconcile.step import Reconciler
from devspace_server.reconcile.store import SpaceStore


def run(
    api: client.ApiClient,
    store: SpaceStore,
    settings: ClusterSettings,
    *,
    lease_namespace: str,
    stop: threading.Event,
    elector: LeaderElector | None = None,
    loop: ReconcileLoop | None = None,
    followers: Sequence[Callable[[ReconcileLoop, threading.Event], None]] = (),
) -> None:
    """Reconcile `store` into the cluster behind `api` while this replica leads.

    Each time leadership is won a fresh loop starts from a full resync, so nothing carries
    over from an earlier term. Cluster failures are retried inside; nothing is raised.
    Each of `followers` runs in its own thread for the term, to feed the loop (for example
    `dbstore.follow_changes`), and must return once the term's event is set.
    """
    elector = elector or LeaderElector(api, lease_namespace)
    reconciler = Reconciler(Cluster(api), store, settings)

    def lead(lost: threading.Event) -> None:
        term = loop or ReconcileLoop(reconciler)
        for follow in followers:
            threading.Thread(target=follow, args=(term, lost), daemon=True).start()
        term.run(lost)

    elector.run(lead, stop)
