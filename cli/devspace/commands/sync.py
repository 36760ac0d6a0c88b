"""`devspace sync [SPACE]`: keep a local folder and a folder in the space in sync, two ways.

Live by default: a first pass (with a progress line on a terminal), then a one-line status
(idle, syncing N, conflicts) until Ctrl-C. `--once` runs one pass and prints what it did
(`--output json` for scripts); `--dry-run` prints the plan and changes nothing. A pass that
would delete a lot (or everything, because one side is suddenly empty) stops and asks; `--yes`
answers for scripts.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from devspace.commands.common import server_option, which_server, which_space
from devspace.errors import UsageError
from devspace.output import emit, output_option
from devspace.sync.display import Progress, describe, plan_text

if TYPE_CHECKING:
    from devspace.project import SyncFolder
    from devspace.ssh import Connection
    from devspace.sync.live import Status
    from devspace.sync.once import PassReport
    from devspace.sync.operations import SyncPlan
    from devspace.sync.plan import PlanOptions

DEFAULT_REMOTE = "/workspace"


@click.command()
@click.argument("space", required=False)
@click.option(
    "--local",
    "local",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder on this computer (default: devspace.yaml's `sync`, else this folder).",
)
@click.option(
    "--remote",
    help=f"The folder in the space (default: devspace.yaml's `sync`, else {DEFAULT_REMOTE}).",
)
@click.option("--once", is_flag=True, help="Run one pass and exit (for scripts).")
@click.option("--dry-run", is_flag=True, help="Print what one pass would do; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Go on past the safety brakes without asking.")
@server_option
@output_option
def sync(
    *,
    space: str | None,
    local: Path | None,
    remote: str | None,
    once: bool,
    dry_run: bool,
    yes: bool,
    server: str | None,
    output: str,
) -> None:
    """Sync a local folder with a folder in SPACE, both ways, keeping both versions of a
    conflict. In a project, SPACE and the folders (with their ignore and one-way rules) come
    from devspace.yaml; elsewhere SPACE is the one chosen with `devspace spaces use`."""
    rules = _project_folder() if local is None and remote is None else None
    if rules is not None:
        local, remote = rules.local, rules.remote
    local, remote = local or Path("."), remote or DEFAULT_REMOTE
    if not remote.startswith("/"):
        raise UsageError(f"--remote must be an absolute path in the space, not {remote!r}")
    if output == "json" and not (once or dry_run):
        raise UsageError("--output json needs --once or --dry-run")
    folder = local.resolve()
    if not folder.is_dir():
        raise UsageError(f"{local} is not a folder")
    from devspace.api import Api  # noqa: PLC0415 - requests is slow to import
    from devspace.remote import connect  # noqa: PLC0415

    url = which_server(server)
    name = which_space(url, space)
    api = Api(url)
    run = Run(name, folder, remote.rstrip("/") or "/", lambda: connect(api, name), yes=yes)
    if rules is not None:
        run.follow(rules)
    if once or dry_run:
        emit(run.once(dry_run=dry_run), output, plan_text)
    else:
        run.live()


def _project_folder() -> SyncFolder | None:
    """The first `sync` folder of the devspace.yaml here or above, or None without one.

    Raises `ProjectError` (a usage error naming the line) for a wrong file.
    """
    from devspace import project  # noqa: PLC0415 - reads YAML: only when it is needed

    found = project.find(Path.cwd())
    folders = project.load(found).sync if found is not None else ()
    return folders[0] if folders else None


class Run:
    """One `devspace sync` run: the folders, how to connect, and what it shows on stderr."""

    ignore: tuple[str, ...] = ()
    """More patterns to leave alone (devspace.yaml's `sync.ignore`)."""
    no_upload: tuple[str, ...] = ()
    no_download: tuple[str, ...] = ()
    gitignore = True
    """Whether `.gitignore` files count (devspace.yaml's `sync.gitignore`)."""

    def __init__(
        self,
        space: str,
        local: Path,
        remote: str,
        connect: Callable[[], Connection],
        *,
        yes: bool = False,
        err: TextIO | None = None,
    ) -> None:
        """Sync `local` with `remote` in `space`, connecting with `connect`."""
        self.space, self.local, self.remote, self.connect = space, local, remote, connect
        self.yes = yes
        self.err = err or sys.stderr
        self.terminal = self.err.isatty()

    def _key(self) -> Any:
        from devspace.sync.state import FolderKey  # noqa: PLC0415 - only when syncing

        return FolderKey(self.space, str(self.local), self.remote)

    def once(self, *, dry_run: bool = False) -> dict[str, Any]:
        """One pass (or only its plan); returns what `plan_text` and `--output json` show.

        Raises SyncLocked if a live sync runs on this folder, SyncError subclasses and
        SshError for everything else that stops a pass.
        """
        from devspace.sync.lock import FolderLock  # noqa: PLC0415
        from devspace.sync.once import scan_ahead, sync_once  # noqa: PLC0415
        from devspace.sync.remote import PodFolder  # noqa: PLC0415
        from devspace.sync.state import AncestorStore  # noqa: PLC0415

        key = self._key()
        options = self._options()
        shown = Progress(self.err) if self.terminal and not dry_run else None
        scanned = scan_ahead(self.local, ignore=self.ignore, gitignore=self.gitignore)
        with FolderLock(key), AncestorStore.for_folder(key) as store, self.connect() as conn:
            if not dry_run and not len(store.load()):
                # A first sync makes its pod folder; later, a missing one is a warning sign (a
                # wiped volume) that the empty-root brake reports.
                made = conn.run(["mkdir", "-p", "--", self.remote], timeout=30)
                if made.exit_status != 0:
                    why = made.stderr.decode(errors="replace").strip()
                    raise UsageError(f"cannot make {self.remote} in space {self.space}: {why}")
            pod = PodFolder(conn.sftp(), self.remote)
            started = time.monotonic()
            report = sync_once(
                self.local,
                pod,
                store,
                options=options,
                ignore=self.ignore,
                gitignore=self.gitignore,
                dry_run=dry_run,
                progress=shown,
                scanned=scanned.result(),
            )
            if report.stopped and not dry_run and self.confirm(report.plan):
                confirmed = frozenset(b.reason for b in report.plan.brakes)
                options = dataclasses.replace(options, confirmed=confirmed)
                report = sync_once(
                    self.local,
                    pod,
                    store,
                    options=options,
                    ignore=self.ignore,
                    gitignore=self.gitignore,
                    progress=shown,
                )
            if shown is not None:
                shown.finish(len(report.applied.done) if report.applied else 0, started)
        summary = describe(report, dry_run=dry_run)
        if report.stopped and not dry_run:
            from devspace.sync.errors import SyncError  # noqa: PLC0415

            raise SyncError(
                "stopped by a safety brake, nothing was changed: "
                + "; ".join(b.message for b in report.plan.brakes)
                + " — run again with --yes to go on"
            )
        return summary

    def follow(self, rules: SyncFolder) -> None:
        """Leave alone what `rules` (a devspace.yaml `sync` folder) says to leave alone."""
        self.ignore, self.no_upload, self.no_download = (
            rules.ignore,
            rules.no_upload,
            rules.no_download,
        )
        self.gitignore = rules.gitignore

    def _options(self) -> PlanOptions:
        from devspace.sync.plan import PlanOptions  # noqa: PLC0415 - only when syncing
        from devspace.sync.policy import DirectionRules, NameRules  # noqa: PLC0415

        return PlanOptions(
            local_names=NameRules.for_platform(),
            directions=DirectionRules(self.no_upload, self.no_download),
        )

    def confirm(self, plan: SyncPlan) -> bool:
        """Whether to go on past `plan`'s brakes: --yes, or the person says so."""
        if self.yes:
            return True
        if not (self.terminal and sys.stdin.isatty()):
            return False
        self.clear()
        for brake in plan.brakes:
            click.echo(f"devspace: {brake.message}", err=True)
        return click.confirm("Go on and delete these files?", default=False, err=True)

    def live(self) -> None:
        """Sync until Ctrl-C. Raises what `SyncSession.run` raises."""
        from devspace.sync.live import SyncSession  # noqa: PLC0415
        from devspace.sync.state import AncestorStore  # noqa: PLC0415

        shown = Progress(self.err) if self.terminal else None
        session = SyncSession(
            self.local,
            AncestorStore.for_folder(self._key()),
            self.connect,
            options=self._options(),
            ignore=self.ignore,
            gitignore=self.gitignore,
            on_status=self.show,
            on_brake=self.confirm,
            on_pass=self._passed,
            progress=shown,
        )
        self._first = shown
        self._files: int | None = None
        self._stopping = False
        self._started = time.monotonic()
        self._last_line: tuple[object, ...] = ()
        errors: list[BaseException] = []

        # Waited for with an Event, not Thread.join: a join that Ctrl-C interrupts marks the
        # thread as finished while it still runs (CPython 3.11's bpo-45274 handling), and the
        # engine would be cut off before it stops its watchers and records its state.
        finished = threading.Event()

        def running() -> None:
            try:
                session.run()
            except BaseException as error:  # re-raised on the main thread below
                errors.append(error)
            finally:
                finished.set()

        threading.Thread(target=running, name="sync", daemon=True).start()
        try:
            while not finished.wait(0.2):
                pass
        except KeyboardInterrupt:
            self._stopping = True  # the status line is cleared, not rewritten, from here on
            session.stop()
            finished.wait(30)
            raise  # stopped cleanly; still exit 130, as any program Ctrl-C ended
        finally:
            self.clear()
        if errors:
            raise errors[0]

    def _passed(self, report: PassReport) -> None:
        if self._files is None and report.applied is not None:
            self._files = len(report.applied.done)

    def show(self, status: Status) -> None:
        """The one-line status: rewritten in place on a terminal, a line per change otherwise."""
        if self._stopping and self.terminal:
            return
        if self._first is not None and status.state not in ("starting", "syncing"):
            self._first.finish(self._files, self._started)
            self._first = None
        if self._first is not None:
            return  # the first pass shows its progress line instead
        conflicts = f", {len(status.conflicts)} conflicts" if status.conflicts else ""
        if status.state == "syncing":
            line = f"sync: syncing {status.pending}{conflicts}"
        else:
            extra = f": {status.message}" if status.message else ""
            line = f"sync: {status.state}{conflicts}{extra}"
        if self.terminal:
            self.err.write("\r\x1b[K" + line[:200])
            self.err.flush()
        elif status.state != "syncing" and (status.state, status.message, conflicts) != (
            self._last_line
        ):
            self._last_line = (status.state, status.message, conflicts)
            print(line, file=self.err, flush=True)

    def clear(self) -> None:
        """End the status line, so what follows starts on a line of its own."""
        if self.terminal:
            self.err.write("\r\x1b[K")
            self.err.flush()
