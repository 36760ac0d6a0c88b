"""The reconciler: converges the cluster to the desired spaces and reports what it observed.

- `store`: the seam to the database (`SpaceStore`), and an in-memory store for tests.
- `cluster`: the edge to the Kubernetes API; every kubernetes exception becomes one of ours
  (`errors`) there.
- `status`: a pure reading of observed objects into a `SpaceStatus`.
- `step`: one reconcile of one space, finalization, and orphan cleanup.
- `snapshot`: each kind listed once, so a full resync applies only what differs.
- `loop`: the work queue, watches and periodic resync; `leader`: Lease-based leader election;
  `run`: the two together, as the reconciler process runs them.
- `process`: the process (`devspace-server reconcile [--once]`), configured by `settings`
  (public keys only), writing its `heartbeat` to the database and serving its `probe`s.
"""
