"""The reconciler process: leader election around the reconcile loop.

`run` is what `devspace-server reconcile` (and `serve`, for the embedded default) calls once
the database-backed store exists; it returns when `stop` is set. `run_once` is
`devspace-server reconcile --once`: one full pass while holding the Lease, then return.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from kubernetes import client

from devspace_server.kube.spec import ClusterSettings
from devspace_server.reconcile.cluster import Cluster
from devspace_server.reconcile.leader import LeaderElector
from devspace_server.reconcile.loop import PassResult, ReconcileLoop
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


class NotLeader(RuntimeError):
    """`run_once` could not take the Lease in time: another replica leads."""


def run_once(
    api: client.ApiClient,
    store: SpaceStore,
    settings: ClusterSettings,
    *,
    lease_namespace: str,
    stop: threading.Event,
    wait_seconds: float = 30,
    elector: LeaderElector | None = None,
    loop: ReconcileLoop | None = None,
) -> PassResult:
    """One full pass over every space, holding the Lease so no other replica acts meanwhile.

    Waits up to `wait_seconds` for the Lease. Returns the pass's result; raises `NotLeader`
    when the Lease stayed with another replica, and ClusterError when the pass cannot list
    what it must (a failing space is counted in the result instead).
    """
    elector = elector or LeaderElector(api, lease_namespace)
    loop = loop or ReconcileLoop(Reconciler(Cluster(api), store, settings))
    # The elector runs until `finished`: the pass ended, `stop` came, or the wait ran out.
    finished, leading = threading.Event(), threading.Event()
    outcome: list[PassResult | BaseException] = []

    def lead(lost: threading.Event) -> None:
        leading.set()
        try:
            outcome.append(loop.run_once(lost))
        except BaseException as error:
            outcome.append(error)
        finally:
            finished.set()

    def watch() -> None:
        deadline = time.monotonic() + wait_seconds
        while not finished.wait(0.1):
            if stop.is_set() or (not leading.is_set() and time.monotonic() > deadline):
                finished.set()

    threading.Thread(target=watch, name="once-watch", daemon=True).start()
    elector.run(lead, finished)
    if not outcome:
        if stop.is_set():
            raise NotLeader("stopped before the Lease was taken")
        raise NotLeader(
            f"another reconciler has held the Lease {lease_namespace}/{elector.name} for "
            f"{wait_seconds:g} s: stop it, or run without --once"
        )
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result
