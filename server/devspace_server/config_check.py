"""`devspace-server check-config`: every problem with the configuration, and what it reaches.

First every setting is read and checked as a starting server would (`config.read_config`),
but all problems are collected instead of stopping at the first report. Then what the
settings point at is tried, each with a short timeout: the database (reachable; its
migration is reported, not judged, since `migrate` may not have run yet) and each upstream
sign-in provider (an OpenID Connect discovery document that answers and makes sense, a
GitHub that answers). A check that needs a setting that is itself wrong is skipped: its
problem is already reported.

`check_reconciler` does the same for the reconciler's own settings (`reconcile/settings.py`),
its database, and its cluster: the API server answers, the Lease's namespace exists, and
every permission the reconciler needs is granted to the identity it runs as
(`reconcile/access.py`).

Nothing is created or changed: a SQLite file that does not exist yet is not made.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

import requests
from kubernetes import client
from sqlalchemy import make_url

from devspace_server import db
from devspace_server.api import health
from devspace_server.auth.providers import UpstreamProvider
from devspace_server.config import read_config, setting
from devspace_server.errors import ConfigError, DatabaseNotMigrated, DatabaseUnavailable
from devspace_server.reconcile import access
from devspace_server.reconcile.errors import ClusterError, kube_errors
from devspace_server.reconcile.process import ReconcilerError, kube_client
from devspace_server.reconcile.settings import (
    PUBLIC_KEYS_VARIABLE,
    load_reconciler_config,
)

TIMEOUT_SECONDS = 5
_DISCOVERY_KEYS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


@dataclass
class Report:
    """What `check` found: `problems` make the configuration unusable; `notes` do not."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check(environ: Mapping[str, str] | None = None) -> Report:
    """Check the configuration in `environ` (default `os.environ`) and what it names."""
    environ = os.environ if environ is None else environ
    report = Report()
    try:
        reading = read_config(environ)
    except ConfigError as exc:  # the file itself is unreadable: nothing else can be checked
        report.problems.extend(exc.problems)
        return report
    report.problems.extend(reading.problems)
    config = reading.config
    if not {"database_url", "data_dir"} & reading.failed:
        blame = "database_url" if setting(environ, "database_url") else "data_dir"
        _database(config.database_url, reading.name(blame), report)
    for provider in config.upstream:
        _upstream(provider, reading.name, report)
    return report


def check_reconciler(
    environ: Mapping[str, str] | None = None, kubeconfig: str | None = None
) -> Report:
    """Check the reconciler's configuration in `environ` and what it names: the database, and
    the cluster of `kubeconfig` (default: the configured one, else the in-cluster identity)."""
    environ = os.environ if environ is None else environ
    report = Report()
    try:
        config = load_reconciler_config(environ)
    except ConfigError as exc:
        report.problems.extend(exc.problems)
        return report
    report.notes.extend(config.warnings)
    if not config.ca_public_keys:
        report.problems.append(
            f"{PUBLIC_KEYS_VARIABLE} is not set: sidecars would trust no certificate and nobody "
            "could log in; set it to the output of `ssh-keygen -y -f CA_KEY`"
        )
    name = "DEVSPACE_DATABASE_URL" if setting(environ, "database_url") else "DEVSPACE_DATA_DIR"
    _database(config.database_url, name, report)
    _cluster(kubeconfig or config.cluster.kubeconfig, config.cluster.lease_namespace, report)
    return report


def _cluster(kubeconfig: str | None, lease_namespace: str, report: Report) -> None:
    try:
        api = kube_client(kubeconfig)
    except ReconcilerError as exc:
        report.problems.append(str(exc))
        return
    where = api.configuration.host
    try:
        with kube_errors(f"asking {where} for its version"):
            version = client.VersionApi(api).get_code(_request_timeout=TIMEOUT_SECONDS)
        report.notes.append(f"cluster {where}: answers, Kubernetes {version.git_version}")
        _lease_namespace(api, lease_namespace, report)
        refused = list(access.denied(api, lease_namespace))
    except ClusterError as exc:
        report.problems.append(f"cluster {where}: {exc}")
        return
    finally:
        api.close()  # type: ignore[no-untyped-call]
    for permission in refused:
        report.problems.append(
            f"the reconciler may not {permission}: bind it to the ClusterRole and Role of the "
            "Helm chart's files/reconciler-rbac.yaml"
        )
    if not refused:
        report.notes.append(f"cluster {where}: every permission the reconciler needs is granted")


def _lease_namespace(api: client.ApiClient, name: str, report: Report) -> None:
    try:
        with kube_errors(f"reading namespace {name}"):
            client.CoreV1Api(api).read_namespace(name, _request_timeout=TIMEOUT_SECONDS)
    except ClusterError as exc:
        if exc.code == HTTPStatus.FORBIDDEN:
            return  # a missing `get namespaces`, which the access review reports
        if exc.code != HTTPStatus.NOT_FOUND:
            raise
        report.problems.append(
            f"DEVSPACE_LEASE_NAMESPACE: the namespace {name} does not exist: create it (the Helm "
            "chart installs the reconciler there) or name the one the reconciler runs in"
        )


def _database(url: str, name: str, report: Report) -> None:
    where = db.describe(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _sqlite(Path(parsed.database or ""), name, report)
        return
    engine = health.probe_engine(url)
    try:
        health.check_database(engine)
    except DatabaseUnavailable as exc:
        report.problems.append(f"{name}: {exc}")
        return
    except DatabaseNotMigrated as exc:
        report.notes.append(f"{where}: {exc}")
        return
    finally:
        engine.dispose()
    report.notes.append(f"{where}: reachable, at migration {db.head_revision()}")


def _sqlite(path: Path, name: str, report: Report) -> None:
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            report.problems.append(
                f"{name}: the SQLite database {path} does not exist and cannot be created "
                f"({parent} is not a writable directory): choose a directory this user can write"
            )
        else:
            report.notes.append(f"{path}: does not exist yet; `migrate` or `serve` creates it")
        return
    revision = None
    # Read-only, so that checking never creates or converts anything.
    uri = f"{path.absolute().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=TIMEOUT_SECONDS)) as conn:
            conn.execute("SELECT 1")
            tables = conn.execute("SELECT name FROM sqlite_master WHERE name='alembic_version'")
            if tables.fetchone():
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None
    except sqlite3.Error as exc:
        report.problems.append(f"{name}: the SQLite database {path} cannot be opened ({exc})")
        return
    state = f"at migration {revision}" if revision else "empty (run `devspace-server migrate`)"
    report.notes.append(f"{path}: readable, {state}")


def _upstream(provider: UpstreamProvider, name: Callable[[str], str], report: Report) -> None:
    prefix = f"upstream_{provider.name}_"
    if provider.type == "github":
        _github(provider, name(prefix + "url"), report)
        return
    setting_name, url = name(prefix + "discovery_url"), provider.discovery_url
    try:
        answer = requests.get(url, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        report.problems.append(
            f"{setting_name}: {url} does not answer ({_reason(exc)}): check the URL, and "
            "that this server can reach the provider"
        )
        return
    if answer.status_code != 200:
        report.problems.append(
            f"{setting_name}: {url} answers {answer.status_code}, not the discovery document"
        )
        return
    try:
        document = answer.json()
    except ValueError:
        document = None
    missing = [k for k in _DISCOVERY_KEYS if not isinstance(document, dict) or k not in document]
    if missing:
        report.problems.append(
            f"{setting_name}: {url} is not an OpenID Connect discovery document "
            f"(no {', '.join(missing)})"
        )
        return
    report.notes.append(f"upstream {provider.name}: {url} answers, issuer {document['issuer']}")


def _github(provider: UpstreamProvider, setting_name: str, report: Report) -> None:
    try:
        answer = requests.get(provider.url, timeout=TIMEOUT_SECONDS, allow_redirects=False)
    except requests.RequestException as exc:
        report.problems.append(
            f"{setting_name}: {provider.url} does not answer ({_reason(exc)}): check the URL, "
            "and that this server can reach GitHub"
        )
        return
    report.notes.append(f"upstream {provider.name}: {provider.url} answers ({answer.status_code})")


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT_SECONDS} s"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__
