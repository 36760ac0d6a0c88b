"""The reconciler as a process: `devspace-server reconcile`, alone or started by `serve`.

`reconcile_forever` connects to the database and the cluster and runs `run.run` (leader
election around the loop) with the database store, until SIGTERM or SIGINT, writing its
heartbeat (`heartbeat.py`) beside; `reconcile_once` makes one full pass. The cluster is
reached with the kubeconfig named by `--kubeconfig` or `DEVSPACE_KUBECONFIG`, else with the
in-cluster ServiceAccount. Both take a `ReconcilerConfig` (`settings.py`): no secret key and
no CA private key.

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
from sqlalchemy.engine import Engine

from devspace_server import db
from devspace_server.config import Config, setting
from devspace_server.errors import DevspaceError
from devspace_server.host_key_sealing import DATA_DIR_FILE_NAME
from devspace_server.probe_server import ProbeServer
from devspace_server.reconcile import dbstore, run
from devspace_server.reconcile.errors import ClusterError, kube_errors
from devspace_server.reconcile.heartbeat import Heartbeat
from devspace_server.reconcile.leader import LeaderElector
from devspace_server.reconcile.loop import PassResult
from devspace_server.reconcile.probe import not_ready
from devspace_server.reconcile.settings import (
    PUBLIC_KEYS_VARIABLE,
    ReconcilerConfig,
    log_warnings,
)
from devspace_server.reconcile.step import APPLY_THREADS

log = logging.getLogger(__name__)


class ReconcilerError(DevspaceError):
    """The reconciler cannot start: no usable kubeconfig, or no database."""

    slug = "reconciler"
    title = "Cannot reconcile"


def kube_client(kubeconfig: str | None) -> client.ApiClient:
    """The reconciler's API client from `kubeconfig`, or the in-cluster config when None:
    a connection pool for its parallel applies, and no retries of its own.

    Raises `ReconcilerError` saying what is missing.
    """
    try:
        if kubeconfig:
            if not Path(kubeconfig).is_file():
                raise ReconcilerError(f"the kubeconfig {kubeconfig} does not exist")
            configuration = client.Configuration()
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                kubeconfig, client_configuration=configuration
            )
        else:
            configuration = client.Configuration()
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        # Room for every apply and watch in flight, so no connection is made per request.
        configuration.connection_pool_maxsize = APPLY_THREADS + 8
        # No retries inside the client: urllib3 would repeat a timed-out GET three times,
        # quadrupling how long a hung API server holds a worker. The loop retries, with
        # back-off, and the Lease's deadline counts from the first attempt.
        configuration.retries = False
        return client.ApiClient(configuration)
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


def _store(config: ReconcilerConfig, engine: Engine) -> dbstore.DatabaseSpaceStore:
    keys = config.ca_public_keys
    return dbstore.DatabaseSpaceStore(
        db.make_sessionmaker(engine),
        configured_quota=config.cluster.quota_defaults,
        ca_public_keys=lambda: keys,
        host_key_sealer=config.host_key_sealer,
    )


def reconcile_forever(
    config: ReconcilerConfig,
    *,
    kubeconfig: str | None,
    stop: threading.Event,
    create_lease_namespace: bool = False,
    probes: tuple[str, int] | None = None,
) -> None:
    """Reconcile the database of `config` into the cluster until `stop` is set; with
    `probes`, serve `/healthz` and `/readyz` there (`probe.py`).

    Raises `ReconcilerError`, `DatabaseUnavailable` or `DatabaseNotMigrated` if it cannot
    start; after that, failures are logged and retried.
    """
    api = kube_client(kubeconfig)
    log_warnings(config)
    engine = db.make_engine(config.database_url)
    try:
        db.require_current_schema(engine)
        cluster = config.cluster
        store = _store(config, engine)
        if create_lease_namespace:
            ensure_namespace(api, cluster.lease_namespace)
        log.info(
            "reconciling spaces of instance %s (namespaces %s*)",
            cluster.settings.instance,
            cluster.settings.namespace_prefix,
        )
        elector = LeaderElector(api, cluster.lease_namespace)
        heartbeat = Heartbeat(store.sessions, elector.identity, leading=lambda: elector.leading)
        elector.on_contact = heartbeat.contact
        beating = threading.Thread(target=heartbeat.run, args=(stop,), name="heartbeat")
        beating.start()
        served: ProbeServer | None = None
        if probes is not None:
            try:
                served = ProbeServer(
                    probes,
                    ready=lambda: not_ready(heartbeat),
                    alive=beating.is_alive,
                    metrics_token=config.metrics_token,
                ).start()
            except OSError as error:
                stop.set()
                beating.join()
                raise ReconcilerError(
                    f"cannot serve the probes on {probes[0]}:{probes[1]}: {error.strerror}"
                ) from error
            log.info("probes on http://%s:%d/readyz", probes[0], served.port)
        try:
            run.run(
                api,
                store,
                cluster.settings,
                lease_namespace=cluster.lease_namespace,
                stop=stop,
                elector=elector,
                followers=[functools.partial(dbstore.follow_changes, store)],
            )
        finally:
            stop.set()
            beating.join()
            if served is not None:
                served.stop()
    finally:
        engine.dispose()
        api.close()  # type: ignore[no-untyped-call]


def reconcile_once(
    config: ReconcilerConfig,
    *,
    kubeconfig: str | None,
    stop: threading.Event,
    wait_seconds: float = 30,
) -> PassResult:
    """One full pass over every space of `config`'s database, holding the Lease.

    Returns what the pass did. Raises `ReconcilerError` if it cannot start or cannot take the
    Lease within `wait_seconds`, `ClusterError` if the pass cannot list what it must, and the
    database's errors as `reconcile_forever` does.
    """
    api = kube_client(kubeconfig)
    log_warnings(config)
    engine = db.make_engine(config.database_url)
    try:
        db.require_current_schema(engine)
        cluster = config.cluster
        try:
            return run.run_once(
                api,
                _store(config, engine),
                cluster.settings,
                lease_namespace=cluster.lease_namespace,
                stop=stop,
                wait_seconds=wait_seconds,
            )
        except run.NotLeader as error:
            raise ReconcilerError(str(error)) from error
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
    """The environment for `serve`'s reconciler child: the database `serve` uses, the CA's
    public keys and the host key encryption keys, and none of `serve`'s other secrets (its key
    files are taken out)."""
    env = {k: v for k, v in environ.items() if k not in _SERVER_SECRETS}
    env["DEVSPACE_DATABASE_URL"] = config.database_url
    if config.ssh_ca is not None:
        env[PUBLIC_KEYS_VARIABLE] = config.ssh_ca.trusted_keys_file()
    configured = setting(environ, "host_key_encryption_keys") or setting(
        environ, "host_key_encryption_keys_file"
    )
    if config.host_key_sealer is not None and not configured:
        # `serve` made them in the data directory; the child must open what the API seals.
        env["DEVSPACE_HOST_KEY_ENCRYPTION_KEYS_FILE"] = str(config.data_dir / DATA_DIR_FILE_NAME)
    return env


# What only the API needs: the reconciler child of `serve` is started without them.
_SERVER_SECRETS = frozenset(
    f"DEVSPACE_{name}"
    for name in (
        "SECRET_KEY",
        "SECRET_KEY_FILE",
        "SSH_CA_KEY_FILE",
        "SSH_CA_PREVIOUS_PUBLIC_KEYS",
        "GATEWAY_SECRET",
        "GATEWAY_SECRET_FILE",
    )
)


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
