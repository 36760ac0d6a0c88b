"""A pass over only the subtrees the watchers named: the live engine's fast path.

The planner is given snapshots of the touched subtrees (and their parent directories) on both
sides and the ancestor cut to the same paths; everything else is simply absent from all three,
so nothing outside is touched. The ancestor's cut is read from the store, which the full passes
and every scoped pass keep current: the engine holds no copy of it. What a cut view cannot judge
falls back to a full pass (`scoped_pass` returns None):

- a rules file changed (`.gitignore`, `.devspaceignore`, `devspace.yaml`): what is ignored
  may have changed anywhere;
- too many subtrees, or a name that is not a plain relative path;
- a plan that deletes on a side: the brakes weigh deletes against the whole tree, so a
  scoped plan may delete only a few files, and only while the other side's root is not empty
  (every top-level name the ancestor knows is missing there would mean "emptied");
- a parent of a subtree stopped being a directory on one side (the scope is widened to that
  parent first, a few times);
- the store cannot be read.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterable
from dataclasses import replace
from pathlib import Path

from devspace.sync.apply import ApplyInterrupted, apply
from devspace.sync.once import PassReport
from devspace.sync.operations import BrakeReason, MakeSymlink, MoveAside, SyncPlan, Upload
from devspace.sync.outcome import ApplyResult, Progress
from devspace.sync.plan import PlanOptions, needs_digest, plan
from devspace.sync.policy import GITIGNORE, IGNORE_FILE, IgnoreRules
from devspace.sync.remote import PodFolder
from devspace.sync.scan import LISTING_HEADER, ScopeMoved, add_digests, parse_listing, scan_scopes
from devspace.sync.snapshot import (
    DIRECTORY,
    Ancestor,
    Entry,
    Kind,
    Side,
    Snapshot,
    ancestors,
    parent,
    within,
)
from devspace.sync.state import AncestorStore

MAX_SCOPES = 200
RULE_FILES = frozenset({GITIGNORE, IGNORE_FILE, "devspace.yaml", "devspace.yml"})
_WIDEN = 3  # times a scope may be widened before a full pass is cheaper than guessing

_FIELDS = r"\t%m\t%s\t%T@\t%p\0"
_RECORD = rf"-printf '%y{_FIELDS}%l\0'"
_UNREADABLE = rf"\( -type d ! \( -readable -executable \) -printf 'U{_FIELDS}\0' -prune \)"


def scopes_of(paths: Iterable[str]) -> list[str] | None:
    """The fewest subtrees covering `paths`; None when a full pass is needed instead."""
    wanted = set(paths)
    if len(wanted) > MAX_SCOPES * 8:
        return None
    for path in wanted:
        if not path or "\0" in path or any(p in ("", ".", "..") for p in path.split("/")):
            return None
        if path.rpartition("/")[2] in RULE_FILES:
            return None
    result: list[str] = []
    inside = within(())
    for path in sorted(wanted, key=lambda p: (p.count("/"), p)):
        if not inside(path):
            result.append(path)
            inside = within(result)
    return result if len(result) <= MAX_SCOPES else None


def not_ignored(touched: Iterable[str], rules: IgnoreRules | None) -> set[str]:
    """The paths of `touched` that `rules` do not ignore (all of them without rules)."""
    if rules is None:
        return set(touched)
    ignored_dirs: dict[str, bool] = {}

    def ignored(path: str) -> bool:
        up = parent(path)
        while up:
            if up not in ignored_dirs:
                ignored_dirs[up] = rules.ignores(up, True)
            if ignored_dirs[up]:
                return True
            up = parent(up)
        return rules.ignores(path, False) and rules.ignores(path, True)

    return {p for p in touched if not ignored(p)}


def listing_command(root: str, scopes: Collection[str]) -> str:
    """A shell command printing `scopes`' subtrees and their parents as `parse_listing` reads
    them (paths start with `./`); parents come first, each exactly once."""
    parents = sorted(ancestors(scopes), key=lambda p: (p.count("/"), p))
    quoted = " ".join(shlex.quote(f"./{p}") for p in parents)
    starts = " ".join(shlex.quote(f"./{p}") for p in sorted(scopes))
    command = f"cd -- {shlex.quote(root)} && printf 'devspace-listing-1\\0' && "
    if parents:
        command += f"{{ find {quoted} -maxdepth 0 {_RECORD} 2>/dev/null; }}; "
    # A scope that is gone is not an error: find says so on stderr and lists the others.
    return command + f"find {starts} {_UNREADABLE} -o {_RECORD} 2>/dev/null; true"


def pod_scopes(pod: PodFolder, scopes: Collection[str], rules: IgnoreRules) -> Snapshot:
    """The pod's side of `scopes`. Raises ScopeMoved if a parent is not a directory there,
    FolderMissing-like ListingError for a missing root, RemoteError, ConnectionLost."""
    output = pod.run(listing_command(pod.root, scopes), ok=range(256))
    if not output.startswith(LISTING_HEADER):
        raise ScopeMoved("")
    snapshot = parse_listing(output, rules, strip=b"./")
    for directory in sorted(ancestors(scopes), key=lambda p: p.count("/")):
        if snapshot.get(directory) != DIRECTORY:
            raise ScopeMoved(directory)
    return snapshot


def _widen(scopes: list[str], moved: str) -> list[str] | None:
    if not moved:
        return None
    widened = [s for s in scopes if not (s == moved or s.startswith(moved + "/"))]
    return [*widened, moved]


def scoped_pass(
    local_root: Path,
    pod: PodFolder,
    store: AncestorStore,
    touched: Iterable[str],
    *,
    rules: IgnoreRules,
    options: PlanOptions,
    progress: Progress | None = None,
    pod_unchanged: bool = False,
) -> PassReport | None:
    """Sync only the subtrees covering `touched` against the ancestor in `store`; the report,
    or None when only a full pass can decide (see the module docstring). Records what was done
    with `store.update`.

    `pod_unchanged` says the pod's watcher is live and named none of `touched`: the pod's side
    is then taken from the ancestor rather than listed (one command in the pod less per edit)
    for a plan that only puts files in the pod, each checked afresh right before it is renamed
    into place. Any other plan is made again from a listing.

    Raises ApplyInterrupted (after recording), ConnectionLost, RemoteError, ScanError,
    ListingError, StateError, as `sync_once`.
    """
    scopes = scopes_of(touched)
    if scopes == []:
        return PassReport(SyncPlan(), None)
    if pod_unchanged and scopes:
        fast = _on_the_ancestor(local_root, store, scopes, rules, options)
        if fast is not None:
            return _apply(local_root, pod, store, scopes, fast, progress=progress)
    listed = _listed(local_root, pod, scopes, rules)
    if listed is None:
        return None
    scopes, local, remote = listed
    base = store.within(scopes)
    if base is None:
        return None
    wanted = needs_digest(local, remote, base)
    if wanted:
        local = add_digests(local_root, local, wanted)
        found = pod.digests(wanted)
        remote = remote.with_digests(
            {p: d for p, d in found.items() if (e := remote.get(p)) and e.kind is Kind.FILE}
        )
    # The planner's brakes would count only the scopes (a deleted file's scope is "empty"):
    # they are judged against the whole tree by `_safe` instead.
    result = plan(local, remote, base, replace(options, confirmed=frozenset(BrakeReason)))
    if not _safe(result, options, store, scopes, {Side.LOCAL: local, Side.REMOTE: remote}):
        return None
    return _apply(local_root, pod, store, scopes, (local, remote, result), progress=progress)


def _listed(
    local_root: Path, pod: PodFolder, scopes: list[str] | None, rules: IgnoreRules
) -> tuple[list[str], Snapshot, Snapshot] | None:
    """The scopes (widened where a parent moved) and both sides' snapshots of them; None when
    only a full pass can tell."""
    for _ in range(_WIDEN):
        if not scopes:
            return None
        try:
            return scopes, scan_scopes(local_root, scopes, rules), pod_scopes(pod, scopes, rules)
        except ScopeMoved as moved:
            scopes = _widen(scopes, moved.path)
    return None


def _on_the_ancestor(
    local_root: Path,
    store: AncestorStore,
    scopes: list[str],
    rules: IgnoreRules,
    options: PlanOptions,
) -> tuple[Snapshot, Snapshot, SyncPlan] | None:
    """The laptop's scopes, the pod's as the ancestor has them, and a plan that only puts
    files in the pod (uploads, links); None for anything else, which needs a listing.

    Only those writes are safe on an unlisted pod: each is staged under a temporary name and
    renamed into place after the pod was asked afresh that the target is still what the plan
    expects. Directories, modes and deletes are checked against the listing alone.
    """
    base = store.within(scopes)
    if base is None or any(base.remote.get(d) != DIRECTORY for d in ancestors(scopes)):
        return None
    try:
        local = scan_scopes(local_root, scopes, rules)
    except ScopeMoved:
        return None
    remote = base.remote
    if needs_digest(local, remote, base):
        return None
    result = plan(local, remote, base, replace(options, confirmed=frozenset(BrakeReason)))
    writes_files = all(
        isinstance(op, Upload) or (isinstance(op, MakeSymlink) and op.side is Side.REMOTE)
        for op in result.operations
    )
    if not writes_files or result.conflicts or result.stopped:
        return None
    return local, remote, result


def _apply(
    local_root: Path,
    pod: PodFolder,
    store: AncestorStore,
    scopes: list[str],
    planned: tuple[Snapshot, Snapshot, SyncPlan],
    *,
    progress: Progress | None,
) -> PassReport:
    """Apply a scoped plan (made from the `local` and `remote` snapshots) and record what was
    done, also when the connection drops."""
    local, remote, result = planned
    try:
        inside, chain = within(scopes), ancestors(scopes)
        applied = apply(
            result,
            local_root,
            pod,
            local,
            remote,
            progress=progress,
            listed=lambda path: path in chain or inside(path),
        )
    except ApplyInterrupted as error:
        _record(store, result, error.partial)
        raise
    _record(store, result, applied)
    return PassReport(result, applied)


def _safe(
    result: SyncPlan,
    options: PlanOptions,
    store: AncestorStore,
    scopes: Collection[str],
    sides: dict[Side, Snapshot],
) -> bool:
    """Whether a scoped plan's deletes are few and the other side's root is not emptied."""
    for side in Side:
        deletes = result.deletes(side)
        if not deletes:
            continue
        if deletes >= options.limits.min_deletes or deletes > options.limits.max_deletes:
            return False
        tops = store.tops()  # both sides' views of the ancestor hold the same paths
        if tops is None:
            return False
        inside = within(scopes)
        if tops and all(inside(t) for t in tops) and not any(t in sides[side.other] for t in tops):
            return False
    return True


def _record(store: AncestorStore, result: SyncPlan, applied: ApplyResult) -> None:
    paths = {op.path for op in applied.done}
    paths.update(op.to for op in applied.done if isinstance(op, MoveAside))
    paths.update(result.agreed)
    agreed = Ancestor().settled(paths, applied.local, applied.remote)
    changes: dict[str, tuple[Entry, Entry] | None] = {
        p: (agreed.local[p], agreed.remote[p]) if p in agreed.local else None for p in paths
    }
    # A directory deleted on both sides by a scoped plan leaves no child records behind: the
    # deletes ran children first, each recorded above.
    store.update(changes)
