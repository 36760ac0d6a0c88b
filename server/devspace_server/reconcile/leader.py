"""Leader election with a coordination.k8s.io Lease, as client-go's leaderelection does it.

Several reconciler replicas may run; the one holding the Lease reconciles. A holder renews
every `retry_seconds`; a candidate takes the Lease over once its record has not changed for
`lease_seconds` by the candidate's own clock (never by comparing clocks across machines).
A leader that cannot renew within `renew_deadline` stops leading before its Lease can
expire, so two leaders never act at once for longer than clock drift allows.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from kubernetes import client

from devspace_server.reconcile.errors import (
    ClusterConflict,
    ClusterError,
    ClusterNotFound,
    ClusterUnavailable,
    kube_errors,
)

log = logging.getLogger(__name__)
LEASE_NAME = "devspace-reconciler"
# Told after every attempt: whether the API server answered, and the error if any.
Contact = Callable[[bool, str | None], None]


def default_identity() -> str:
    """A name unique to this process: host name plus a random suffix."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class LeaderElector:
    """Competes for one Lease; `run` calls `lead` while this process holds it."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        name: str = LEASE_NAME,
        identity: str | None = None,
        lease_seconds: float = 15,
        renew_deadline: float = 10,
        retry_seconds: float = 2,
        clock: Callable[[], float] = time.monotonic,
        on_contact: Contact | None = None,
    ) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.on_contact = on_contact
        # A Lease call that hangs must fail before the renew deadline passes, or a partition
        # could keep this replica "leading" after its Lease expired elsewhere.
        self.timeout = (renew_deadline / 2, renew_deadline / 2)
        self.leading = False
        """True while this process holds the Lease and its `lead` runs (for the heartbeat)."""
        self._observed: tuple[str | None, datetime | None] | None = None
        self._observed_at = 0.0

    def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; True when this process holds it now.

        Raises ClusterError on failures other than losing a race.
        """
        now = datetime.now(UTC)
        try:
            with kube_errors(f"reading lease {self.namespace}/{self.name}"):
                lease = self.leases.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=self.timeout
                )
        except ClusterNotFound:
            return self._create(now)
        spec = lease.spec or client.V1LeaseSpec()
        record = (spec.holder_identity, spec.renew_time)
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        holder = spec.holder_identity
        held_by_other = bool(holder) and holder != self.identity
        if held_by_other and self._observed_at + self.lease_seconds > self.clock():
            return False
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = max(1, round(self.lease_seconds))
        spec.renew_time = now
        lease.spec = spec
        try:
            with kube_errors(f"renewing lease {self.namespace}/{self.name}"):
                # replace carries the resourceVersion we read: a concurrent writer makes this
                # a 409, so two candidates never both win.
                self.leases.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=self.timeout
                )
        except ClusterConflict:
            return False
        self._observed, self._observed_at = (self.identity, now), self.clock()
        return True

    def _create(self, now: datetime) -> bool:
        lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=max(1, round(self.lease_seconds)),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            with kube_errors(f"creating lease {self.namespace}/{self.name}"):
                self.leases.create_namespaced_lease(
                    self.namespace, lease, _request_timeout=self.timeout
                )
        except ClusterConflict:
            return False
        self._observed, self._observed_at = (self.identity, now), self.clock()
        return True

    def release(self) -> None:
        """Give the Lease up (if held), so a successor need not wait for it to expire."""
        try:
            with kube_errors(f"releasing lease {self.namespace}/{self.name}"):
                lease = self.leases.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=self.timeout
                )
                if lease.spec is None or lease.spec.holder_identity != self.identity:
                    return
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self.leases.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=self.timeout
                )
        except ClusterError as error:
            log.warning("could not release the lease: %s", error)

    def run(self, lead: Callable[[threading.Event], None], stop: threading.Event) -> None:
        """Until `stop` is set: wait for the Lease, then call `lead(lost)` in a thread.

        `lost` is set when this process stops leading (renewal failed, or `stop`); `lead` must
        return soon after. Leadership may be won and lost several times.
        """
        while not stop.is_set():
            if not self._attempt():
                stop.wait(self.retry_seconds)
                continue
            log.info("%s became the leader", self.identity)
            lost = threading.Event()
            worker = threading.Thread(target=lead, args=(lost,), name="leader", daemon=True)
            worker.start()
            self.leading = True
            self._renew_until_lost(stop)
            self.leading = False
            lost.set()
            worker.join()
            log.info("%s stopped leading", self.identity)
        self.release()

    def _attempt(self) -> bool:
        try:
            held = self.try_acquire_or_renew()
        except ClusterError as error:
            log.warning("leader election: %s", error)
            self._contact(not isinstance(error, ClusterUnavailable), str(error))
            return False
        self._contact(True, None)
        return held

    def _contact(self, reachable: bool, error: str | None) -> None:
        if self.on_contact is not None:
            self.on_contact(reachable, error)

    def _renew_until_lost(self, stop: threading.Event) -> None:
        last_renewal = self.clock()
        while not stop.wait(self.retry_seconds):
            if self._attempt():
                last_renewal = self.clock()
            elif self.clock() - last_renewal > self.renew_deadline:
                return
            elif self._observed is not None and self._observed[0] != self.identity:
                return  # someone else holds it: we lost it for certain
