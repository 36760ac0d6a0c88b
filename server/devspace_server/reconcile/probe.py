"""The reconciler's readiness, for the Helm chart's probes (`reconcile --probes HOST:PORT`,
served by `devspace_server.probe_server` together with `/healthz` and `/metrics`).

A replica is ready while it reaches the Kubernetes API server: within `UNREACHABLE_AFTER`
of now. Whether it leads does not matter — a follower is ready to take over.
"""

from __future__ import annotations

from devspace_server.reconcile.heartbeat import UNREACHABLE_AFTER, Heartbeat


def not_ready(heartbeat: Heartbeat) -> str | None:
    """None while the API server answered within `UNREACHABLE_AFTER`, else why not (words
    for the 503's detail)."""
    contacted = heartbeat.contacted_at
    if contacted is None:
        return "the Kubernetes API server has not been reached yet"
    if contacted < heartbeat.clock() - UNREACHABLE_AFTER:
        return f"the Kubernetes API server has not answered since {contacted:%H:%M:%S} UTC"
    return None
