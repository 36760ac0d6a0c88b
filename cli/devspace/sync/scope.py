"""A pass over only the subtrees the watchers named: the live engine's fast path.

The planner is given snapshots of the touched subtrees (and their parent directories) on both
sides and the ancestor cut to the same paths; everything else is simply absent from all three,
so nothing outside is touched. What a cut view cannot judge falls back to a full pass
(`scoped_pass` returns None):

- a rules file changed (`.gitignore`, `.devspaceignore`, `devspace.yaml`): what is ignored
  may have changed anywhere;
- too many subtrees, or a name that is not a plain relative path;
- a plan that deletes on a side: the brakes weigh deletes against the whole tree, so a
  scoped plan may delete only a few files, and only while the other side's root is not empty
  (every top-level name the ancestor knows is missing there would mean "emptied");
- a parent of a subtree stopped being a directory on one side (the scope is widened to that
  parent first, a few times).
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterable
from dataclasses import replace
from pathlib import Path

from devspace.sync.apply import ApplyInterrupted, apply
from devspace.sync.once import PassReport
from devspace.sync.operations import BrakeReason, MoveAside, SyncPlan
from devspace.sync.outcome import ApplyResult, Progress
from devspace.sync.plan import PlanOptions, needs_digest, plan
from devspace.sync.policy import GITIGNORE, IGNORE_FILE, IgnoreRules
from devspace.sync.remote import PodFolder, ancestors
from devspace.sync.scan import LISTING_HEADER, ScopeMoved, add_digests, parse_listing, scan_scopes
from devspace.sync.snapshot import DIRECTORY, Ancestor, Entry, Kind, Side, Snapshot, within
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


def cut(ancestor: Ancestor, scopes: Collection[str]) -> Ancestor:
    """The ancestor's records inside `scopes`, with their parent directories."""
    inside = within(scopes)
    keep = ancestors(scopes)
    local = {p: e for p, e in ancestor.local.items() if p in keep or inside(p)}
    remote = {p: ancestor.remote[p] for p in local}
    return Ancestor(Snapshot(local, check=False), Snapshot(remote, check=False))


def _widen(scopes: list[str], moved: str) -> list[str] | None:
    if not moved:
        return None
    widened = [s for s in scopes if not (s == moved or s.startswith(moved + "/"))]
    return [*widened, moved]


def scoped_pass(
    local_root: Path,
    pod: PodFolder,
    store: AncestorStore,
    ancestor: Ancestor,
    touched: Iterable[str],
    *,
    rules: IgnoreRules,
    options: PlanOptions,
    progress: Progress | None = None,
) -> tuple[PassReport, Ancestor] | None:
    """Sync only the subtrees covering `touched`; the report and the new ancestor, or None
    when only a full pass can decide (see the module docstring). Records what was done with
    `store.update`.

    Raises ApplyInterrupted (after recording), ConnectionLost, RemoteError, ScanError,
    ListingError, StateError, as `sync_once`.
    """
    scopes = scopes_of(touched)
    for _ in range(_WIDEN):
        if scopes is None:
            return None
        if not scopes:
            return PassReport(SyncPlan(), None), ancestor
        try:
            local = scan_scopes(local_root, scopes, rules)
            remote = pod_scopes(pod, scopes, rules)
            break
        except ScopeMoved as moved:
            scopes = _widen(scopes, moved.path)
    else:
        return None
    base = cut(ancestor, scopes)
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
    if not _safe(result, options, ancestor, scopes, {Side.LOCAL: local, Side.REMOTE: remote}):
        return None
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
        _record(store, ancestor, result, error.partial)
        raise
    return PassReport(result, applied), _record(store, ancestor, result, applied)


def _safe(
    result: SyncPlan,
    options: PlanOptions,
    ancestor: Ancestor,
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
        tops = {p for p in ancestor.view(side.other) if "/" not in p}
        inside = within(scopes)
        if tops and all(inside(t) for t in tops) and not any(t in sides[side.other] for t in tops):
            return False
    return True


def _record(
    store: AncestorStore, ancestor: Ancestor, result: SyncPlan, applied: ApplyResult
) -> Ancestor:
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
    return ancestor.updated(changes)
