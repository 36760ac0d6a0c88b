"""The `devspace-server` command: parses arguments and dispatches; the work is elsewhere.

Every foreseeable failure is a `DevspaceError`, printed as one line with exit status 1
(usage errors exit 2, as click does): never a traceback.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from devspace_server import __version__, accounts, config_check, db, logs
from devspace_server import serve as embedded
from devspace_server.config import load_database_url, setting
from devspace_server.errors import Conflict, DatabaseUnavailable, DevspaceError, ValidationFailed
from devspace_server.models import Role, User
from devspace_server.reconcile import process as reconciler
from devspace_server.reconcile.settings import load_reconciler_config
from devspace_server.serve import Bind


class _Group(click.Group):
    """A click group that turns our errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ValidationFailed as exc:
            # On a terminal each field's own message is what helps, not the summary.
            raise click.ClickException(" ".join(e.detail for e in exc.errors)) from exc
        except DevspaceError as exc:
            raise click.ClickException(str(exc)) from exc


def _logging(level: str) -> None:
    # The format is read here rather than from each command's configuration: the
    # reconciler's has none, and a bad value is reported by the server's own check.
    logs.configure(level, (setting(os.environ, "log_format") or "json").strip().lower())


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="devspace-server")
def cli() -> None:
    """Run and administer the devspace server.

    Configuration comes from DEVSPACE_* environment variables and the TOML file named by
    DEVSPACE_CONFIG_FILE.
    """


@cli.command()
@click.option(
    "--bind", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT", help="Listen here."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="gunicorn worker processes.",
)
@click.option(
    "--kubeconfig",
    default=None,
    metavar="FILE",
    help="Also run the reconciler, on the cluster of this kubeconfig [$DEVSPACE_KUBECONFIG].",
)
def serve(bind: str, workers: int, kubeconfig: str | None) -> None:
    """Serve on one machine: SQLite and a secret key in the data directory, migrated.

    The data directory is $DEVSPACE_DATA_DIR, or ~/.local/share/devspace. With a
    kubeconfig, the reconciler runs beside the API (in a child process) and spaces work.
    """
    address = embedded.Bind.parse(bind)
    config = embedded.serve_config(os.environ, address)
    _logging(config.log_level)
    embedded.prepare_metrics(os.environ)
    sock = embedded.listen(address)
    kubeconfig = kubeconfig or config.cluster.kubeconfig
    if kubeconfig is None:
        embedded.run(config, sock, workers)
        return
    # Checked here, not only in the child: serving without the reconciler that was asked
    # for would leave every space provisioning forever.
    reconciler.kube_client(kubeconfig).close()  # type: ignore[no-untyped-call]
    # Migrated before the reconciler starts, which refuses an old schema (`run` then
    # finds nothing left to do).
    engine = db.make_engine(config.database_url)
    db.ensure_sqlite_directory(config.database_url)
    try:
        db.migrate(engine)
    finally:
        engine.dispose()
    child = reconciler.start_child(os.environ, config, os.path.abspath(kubeconfig))
    try:
        embedded.run(config, sock, workers)
    finally:
        reconciler.stop_child(child)


@cli.command()
@click.option(
    "--kubeconfig",
    default=None,
    metavar="FILE",
    help="The cluster to reconcile [$DEVSPACE_KUBECONFIG; default: in-cluster config].",
)
@click.option("--embedded", type=int, default=None, hidden=True, help="serve's process id.")
@click.option(
    "--once",
    is_flag=True,
    help="One full pass over every space, then exit (non-zero if a space failed).",
)
@click.option(
    "--probes",
    default=None,
    metavar="HOST:PORT",
    envvar="DEVSPACE_RECONCILER_PROBES",
    help="Serve /healthz and /readyz here, for Kubernetes probes [$DEVSPACE_RECONCILER_PROBES].",
)
def reconcile(kubeconfig: str | None, embedded: int | None, once: bool, probes: str | None) -> None:
    """Make the cluster match the database: namespaces, quotas and pods of every space.

    Several may run; a Lease elects the one that acts. Stops on SIGTERM or SIGINT. Needs
    only the SSH CA's public keys ($DEVSPACE_SSH_CA_PUBLIC_KEYS), never its private key.
    """
    config = load_reconciler_config()
    _logging(config.log_level)
    stop = threading.Event()
    reconciler.stop_on_signals(stop)
    if embedded is not None:
        reconciler.stop_with_parent(stop, embedded)
    kubeconfig = kubeconfig or config.cluster.kubeconfig
    if once:
        done = reconciler.reconcile_once(config, kubeconfig=kubeconfig, stop=stop)
        summary = (
            f"reconciled {done.spaces} spaces in {done.seconds:.2f} s "
            f"({done.applied} objects applied)"
        )
        if done.orphans:
            summary += f"; orphan namespaces: {', '.join(done.orphans)}"
        if done.failed:
            raise click.ClickException(
                f"{summary}; {len(done.failed)} failed ({', '.join(done.failed[:10])}): "
                "see the log above"
            )
        click.echo(summary, err=True)
        return
    probe_bind = Bind.parse(probes) if probes else None
    reconciler.reconcile_forever(
        config,
        kubeconfig=kubeconfig,
        stop=stop,
        create_lease_namespace=embedded is not None,
        probes=(probe_bind.host, probe_bind.port) if probe_bind else None,
    )


@cli.command()
def migrate() -> None:
    """Bring the database schema up to this version (safe to run again)."""
    url = load_database_url()
    db.ensure_sqlite_directory(url)
    engine = db.make_engine(url)
    try:
        db.migrate(engine)
    finally:
        engine.dispose()
    click.echo(f"database {db.describe(url)} is at migration {db.head_revision()}", err=True)


@cli.command("check-config")
@click.option(
    "--reconciler",
    is_flag=True,
    help="Check the reconciler's configuration, and its cluster, instead of the API server's.",
)
@click.option(
    "--kubeconfig",
    default=None,
    metavar="FILE",
    help="With --reconciler: the cluster [$DEVSPACE_KUBECONFIG; default: in-cluster config].",
)
def check_config(reconciler: bool, kubeconfig: str | None) -> None:
    """Print every problem with the configuration, and exit 1 if there is one.

    Checks each setting as the server does at start, then tries what they name: the
    database and each upstream sign-in provider; with --reconciler, the database and the
    cluster (it answers, the Lease's namespace exists, every permission the reconciler needs
    is granted). Problems go to stdout, one a line; what was found to work goes to stderr.
    """
    if kubeconfig and not reconciler:
        raise click.UsageError("--kubeconfig goes with --reconciler")
    report = (
        config_check.check_reconciler(kubeconfig=kubeconfig) if reconciler else config_check.check()
    )
    for note in report.notes:
        click.echo(f"ok: {note}", err=True)
    for problem in report.problems:
        click.echo(problem)
    if report.problems:
        count = len(report.problems)
        click.echo(f"{count} problem{'s' if count != 1 else ''} in the configuration", err=True)
        sys.exit(1)
    click.echo("the configuration is fine", err=True)


@cli.command("create-admin")
@click.option("--username", required=True, help="Lower-case letters, digits, '.', '_', '-'.")
@click.option("--email", default=None, help="The admin's email address (not verified).")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the password from this file's first line (a mounted Secret).",
)
@click.option(
    "--if-missing",
    is_flag=True,
    help="If the username is taken already, leave that account as it is and exit 0.",
)
def create_admin(
    username: str, email: str | None, password_file: Path | None, if_missing: bool
) -> None:
    """Create an admin with a local password, read from a prompt, stdin or --password-file.

    The password never goes on the command line, where other users could see it. With
    --if-missing the command can run on every start of a pod (the chart's bootstrapAdmin):
    an existing account, however it was made, keeps its password and role.
    """
    engine = db.make_engine(load_database_url())
    try:
        db.require_current_schema(engine)
        with db.make_sessionmaker(engine)() as session:
            if if_missing and (found := _existing(session, username)) is not None:
                _left_as_it_is(found)
                return
            password = _read_password(password_file)
            try:
                user = accounts.create_user(
                    session, username=username, email=email, role=Role.ADMIN, password=password
                )
                session.commit()
            except Conflict:
                # Another replica's init container made it between our look and our insert.
                if not if_missing:
                    raise
                session.rollback()
                found = _existing(session, username)
                if found is None:
                    raise
                _left_as_it_is(found)
                return
    except OperationalError as exc:
        raise DatabaseUnavailable(f"the database failed: {str(exc.orig)[:300]}") from exc
    finally:
        engine.dispose()
    click.echo(user.id)
    click.echo(f"created admin {user.username!r} (id {user.id})", err=True)


def _existing(session: Session, username: str) -> User | None:
    found: User | None = session.scalars(select(User).where(User.username == username)).first()
    return found


def _left_as_it_is(user: User) -> None:
    kind = "admin" if user.role == Role.ADMIN else f"user (role {user.role.value}, not admin)"
    click.echo(user.id)
    click.echo(f"{kind} {user.username!r} (id {user.id}) exists already: left as it is", err=True)


def _read_password(path: Path | None) -> str:
    if path is not None:
        try:
            line = path.read_text().split("\n", 1)[0].rstrip("\r")
        except OSError as exc:
            raise click.UsageError(f"cannot read the password file {path}: {exc.strerror}") from exc
        if not line:
            raise click.UsageError(f"the password file {path} is empty")
        return line
    if sys.stdin.isatty():
        entered: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return entered
    line = sys.stdin.readline()
    if not line:
        raise click.UsageError("no password on stdin: pipe it in, or run on a terminal")
    return line.rstrip("\r\n")


def main() -> None:
    """Console-script entry point."""
    cli()
