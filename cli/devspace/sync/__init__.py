"""Two-way file sync between the laptop and the dev pod, three-way so it never loses data.

The modules, by job (the first six are the pure core):

- `snapshot`: `Entry`, `Snapshot` (an immutable tree) and the `Ancestor` both sides agreed on;
- `scan`: the laptop's tree (`scan`) and the pod's, from one `listing_command` round trip
  (`parse_listing`);
- `policy`: ignore rules, one-way excludes, names each file system can hold, links;
- `plan`: three snapshots in, a `SyncPlan` out (`plan`), pure;
- `operations`: what a plan holds — operations in applicable order, conflicts, skips, brakes;
- `state`: the ancestor on disk per (space, folder);
- `remote`: the pod's folder over paramiko (`PodFolder`: the listing in one exec, fresh looks
  at paths, digests, tar streams; `Pipeline`: SFTP requests with many in flight);
- `apply` (the laptop's side) and `podwrite` (the pod's): a plan applied with every
  operation checked first and files renamed into place; `outcome` holds what they report;
- `once`: `sync_once`, the whole pass below in one call;
- `watch` (which paths changed: watchdog on the laptop, `inotifywait` in the pod, coalesced in
  `Changes`), `scope` (a pass over only the touched subtrees), `lock` (one engine per folder,
  and its status file), `live` (`SyncSession`: the continuous engine, reconnecting).

One pass, as the engine runs it:

1. `scan(root, IgnoreRules.load(root, extra=yaml_ignores))` gives the local snapshot and the
   rules (with nested `.gitignore` files); run `listing_command` in the pod and
   `parse_listing(output, rules)` (`PodFolder.listing`) — `FolderMissing` (a ListingError)
   means the pod's folder is missing: plan against an empty `Snapshot()` so the empty-root
   brake speaks;
2. `AncestorStore.for_folder(key).load()`;
3. hash the files `needs_digest` names on both sides (`add_digests` here, `sha256sum` in the
   pod) and plan with `PlanOptions(local_names=NameRules.for_platform(), conflict_stamp=...)`;
4. if `plan.stopped`, explain `plan.brakes` and wait for the user (then plan again with
   `confirmed`); else apply the operations in order, checking each one's recorded entries
   against the file before writing (`apply`), and record what was done with
   `AncestorStore.save(settled(...))`; `plan.agreed` paths are recorded without copying
   anything. `sync_once` does all of this.

Import from the submodules (`from devspace.sync.plan import plan`): the package re-exports
nothing, so `devspace.sync.scan` is always the module, never the function.
"""
