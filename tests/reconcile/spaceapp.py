"""A devspace app on a fresh SQLite database, set up for reconciler tests, and API callers.

Shared by the tests that drive spaces through the API while a real reconciler runs (in a
thread, or as a `devspace-server reconcile` process: `reconciler_environment`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from host_key_encryption import VARIABLE, fresh_host_key_encryption
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from server.oauth_flows import bearer, make_token

from devspace_server import accounts, db
from devspace_server.app import create_app
from devspace_server.config import load_config
from devspace_server.context import state
from devspace_server.host_key_sealing import DATA_DIR_FILE_NAME
from devspace_server.kube.spec import ClusterSettings
from devspace_server.models import Role
from devspace_server.reconcile.leader import LEASE_NAME

SECRET = "end-to-end-secret-0123456789-abcdefghijk"  # noqa: S105 - a test key


@contextmanager
def space_app(
    directory: Path, settings: ClusterSettings, ssh_ca: Path, lease_namespace: str
) -> Iterator[Flask]:
    """The app, migrated, with the test's own installation settings (instance, prefix,
    stand-in sidecar) as the other reconciler tests use, and a fresh host key encryption key
    file in `directory`; its engine is disposed on exit."""
    url = f"sqlite:///{directory / 'devspace.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    engine.dispose()
    config = load_config(
        {
            "DEVSPACE_DATA_DIR": str(directory),
            "DEVSPACE_DATABASE_URL": url,
            "DEVSPACE_SECRET_KEY": SECRET,
            **fresh_host_key_encryption(directory),
            "DEVSPACE_PUBLIC_URL": "http://localhost:8080",
            "DEVSPACE_SSH_CA_KEY_FILE": str(ssh_ca),
            "DEVSPACE_LEASE_NAMESPACE": lease_namespace,
        }
    )
    config = dataclasses.replace(
        config, cluster=dataclasses.replace(config.cluster, settings=settings)
    )
    app = create_app(config)
    yield app
    with app.app_context():
        state().engine.dispose()


def reconciler_environment(
    app: Flask, settings: ClusterSettings, lease_namespace: str
) -> dict[str, str]:
    """The environment of a `devspace-server reconcile` process for `app`: its database, the
    test's installation, its host key encryption key file, and none of this process's other
    `DEVSPACE_` settings. The CA's public keys are the caller's to add."""
    with app.app_context():
        config = state().config
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSPACE_")}
    return env | {
        "DEVSPACE_DATABASE_URL": config.database_url,
        "DEVSPACE_CLUSTER_INSTANCE": settings.instance,
        "DEVSPACE_NAMESPACE_PREFIX": settings.namespace_prefix,
        "DEVSPACE_SIDECAR_IMAGE": settings.sidecar_image,
        "DEVSPACE_LEASE_NAMESPACE": lease_namespace,
        f"{VARIABLE}_FILE": str(config.data_dir / DATA_DIR_FILE_NAME),
    }


def caller(app: Flask, client_: FlaskClient, username: str, role: Role, scope: str) -> Any:
    """A new user's API: `call(method, path, **kwargs)` returns the JSON of a 2xx/3xx answer
    (and fails the test otherwise); `call.user_id` is the user's id."""
    with app.app_context(), state().sessions() as session:
        user = accounts.create_user(session, username=username, role=role, password=None)
        session.commit()
    headers = bearer(make_token(app, user, scope))

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = client_.open(path, method=method, headers=headers, **kwargs)
        assert response.status_code < 400, response.get_json()
        return response.get_json()

    call.user_id = user.id  # type: ignore[attr-defined]
    return call


def forget_lease(kube: client.ApiClient, namespace: str) -> None:
    """Delete the reconciler's Lease in `namespace`, if any: one left by another test would
    make a reconciler wait out its term before it leads."""
    try:
        client.CoordinationV1Api(kube).delete_namespaced_lease(LEASE_NAME, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
