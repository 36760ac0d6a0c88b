"""The reconciler as a process: `devspace-server reconcile`, alone or started by `serve`.

`reconcile_forever` connects to the database and the cluster and runs `run.run` (leader
election around the loop) with the database store, until SIGTERM or SIGINT. The cluster is
reached with the kubeconfig named by `--kubeconfig` or `DEVSPACE_KUBECONFIG`, else with the
in-cluster ServiceAccount.

`serve` runs it as a child process rather than a thread: gunicorn's master forks workers,
and a fork taken while a reconciler thread holds a lock would leave the worker deadlocked.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.config.config_exception import ConfigException

from devspace_server import db
from devspace_server.config import Config, setting
from devspace_server.errors import DevspaceError
from devspace_server.reconcile import dbstore, run
from devspace_server.reconcile.errors import ClusterError, kube_errors

log = logging.getLogger(__name__)


class ReconcilerError(DevspaceError):
    """The reconciler cannot start: no usable kubeconfig, or no database."""

    slug = "reconciler"
    title = "Cannot reconcile"


def kube_client(kubeconfig: str | None) -> client.ApiClient:
    """An API client from `kubeconfig`, or the in-cluster config when None.

    Raises `ReconcilerError` saying what is missing.
    """
    try:
        if kubeconfig:
            if not Path(kubeconfig).is_file():
                raise ReconcilerError(f"the kubeconfig {kubeconfig} does not exist")
            made: client.ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
                kubeconfig
            )
            return made
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except ConfigException as exc:
        where = kubeconfig or "the in-cluster ServiceAccount"
        raise ReconcilerError(
            f"cannot use {where} to reach Kubernetes ({exc}): set DEVSPACE_KUBECONFIG "
            "or --kubeconfig to a kubeconfig file"
        ) from exc


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    """Create namespace `name` if it is missing, for the leader Lease; best effort.

    For the embedded default on a fresh local cluster. A refusal is only logged: in a real
    installation the chart creates the namespace and the reconciler may not.
    """
    core = client.CoreV1Api(api)
    try:
        with kube_errors(f"creating namespace {name}"):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        log.info("created namespace %s for the reconciler's lease", name)
    except ClusterError as error:
        if "already exists" not in str(error):
            log.warning("%s", error)


def reconcile_forever(
    config: Config,
    *,
    kubeconfig: str | None,
    stop: threading.Event,
    create_lease_namespace: bool = False,
) -> None:
    """Reconcile the database of `config` into the cluster until `stop` is set.

    Raises `ReconcilerError`, `DatabaseUnavailable` or `DatabaseNotMigrated` if it cannot
    start; after that, failures are logged and retried.
    """
    api = kube_client(kubeconfig)
    engine = db.make_engine(config.database_url)
    try:
        db.require_current_schema(engine)
        cluster = config.cluster
        ca = config.ssh_ca
        if ca is None:
            log.warning("no SSH CA key: sidecars will trust no certificate, nobody can log in")
        store = dbstore.DatabaseSpaceStore(
            db.make_sessionmaker(engine),
            configured_quota=cluster.quota_defaults,
            ca_public_keys=lambda: ca.trusted_public_keys if ca else (),
        )
        if create_lease_namespace:
            ensure_namespace(api, cluster.lease_namespace)
        log.info(
            "reconciling spaces of instance %s (namespaces %s*)",
            cluster.settings.instance,
            cluster.settings.namespace_prefix,
        )
        run.run(
            api,
            store,
            cluster.settings,
            lease_namespace=cluster.lease_namespace,
            stop=stop,
            followers=[functools.partial(dbstore.follow_changes, store)],
        )
    finally:
        engine.dispose()
        api.close()  # type: ignore[no-untyped-call]


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGTERM and SIGINT (from the main thread only)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


def stop_with_parent(stop: threading.Event, parent: int) -> None:
    """Set `stop` once process `parent` is gone (checked every second, in a thread)."""

    def watch() -> None:
        while not stop.wait(1):
            if os.getppid() != parent:
                log.warning("serve is gone: the reconciler stops too")
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def child_environment(environ: Mapping[str, str], config: Config) -> dict[str, str]:
    """The environment for `serve`'s reconciler child: `serve`'s own defaults made explicit.

    `serve` fills in the data directory's secret and CA key files and a loopback public URL
    when they are not configured; the child must load the very same configuration.
    """
    from devspace_server import serve  # noqa: PLC0415 - serve imports gunicorn; only here

    env = dict(environ)
    env["DEVSPACE_DATABASE_URL"] = config.database_url
    env["DEVSPACE_PUBLIC_URL"] = config.public_url
    if not setting(environ, "secret_key") and not setting(environ, "secret_key_file"):
        env["DEVSPACE_SECRET_KEY_FILE"] = str(config.data_dir / serve.KEY_FILE_NAME)
    if config.ssh_ca is not None and not setting(environ, "ssh_ca_key_file"):
        env["DEVSPACE_SSH_CA_KEY_FILE"] = str(config.data_dir / serve.SSH_CA_KEY_FILE_NAME)
    return env


def start_child(
    environ: Mapping[str, str], config: Config, kubeconfig: str
) -> subprocess.Popen[bytes]:
    """Start `devspace-server reconcile` as a child of `serve`; it ends when `serve` does."""
    env = child_environment(environ, config)
    env["DEVSPACE_KUBECONFIG"] = kubeconfig
    command = [
        sys.executable,
        "-c",
        "from devspace_server.main import main; main()",
        "reconcile",
        "--embedded",
        str(os.getpid()),
    ]
    log.info("starting the reconciler with kubeconfig %s", kubeconfig)
    return subprocess.Popen(command, env=env)


def stop_child(child: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Ask the reconciler child to stop, and wait for it (killing it after `timeout`)."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
