"""`bootstrapAdmin`: a first admin made by the API pods as they start, with a password from a
Secret that the chart generates and keeps (or the admin's own), and no database access
needed from outside. Also the API Service's type, which the cluster demo exposes."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy import select
from sqlalchemy.orm import Session

from devspace_server import db
from devspace_server.auth.passwords import verify_password
from devspace_server.models import Role, User

from .chart import BASE, CHART, POSTGRES, Doc, Helm, HelmFailed, merged, named
from .conftest import Cluster, tenant_role_exists

ADMIN: dict[str, Any] = {"bootstrapAdmin": {"username": "admin"}}
SECRET = "rel-devspace-bootstrap-admin"  # noqa: S105 - a Secret object's name
SERVER = Path(sys.executable).with_name("devspace-server")
MOUNT = "/etc/devspace/bootstrap-admin"


def _api_pod(docs: list[Doc]) -> Doc:
    pod: Doc = named(docs, "Deployment", "-api")["spec"]["template"]["spec"]
    return pod


def _init(pod: Doc) -> dict[str, Doc]:
    return {c["name"]: c for c in pod.get("initContainers", [])}


def test_without_a_username_nothing_is_made(helm: Helm) -> None:
    docs = helm.template(BASE)
    assert not [d for d in docs if d["metadata"]["name"] == SECRET]
    assert list(_init(_api_pod(docs))) == ["migrate"]


def test_on_sqlite_the_admin_is_made_after_the_migrations(helm: Helm) -> None:
    docs = helm.template(merged(BASE, ADMIN))
    secret = named(docs, "Secret", "-bootstrap-admin")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) == 32
    assert password.isalnum()
    assert base64.b64decode(secret["data"]["username"]).decode() == "admin"
    pod = _api_pod(docs)
    assert list(_init(pod)) == ["migrate", "create-admin"]
    made = _init(pod)["create-admin"]
    assert made["command"] == [
        "devspace-server",
        "create-admin",
        "--username=admin",
        f"--password-file={MOUNT}/password",
        "--if-missing",
    ]
    assert made["env"] == _init(pod)["migrate"]["env"]  # the same database
    mounts = {m["name"]: m["mountPath"] for m in made["volumeMounts"]}
    assert mounts == {"bootstrap-admin": MOUNT, "tmp": "/tmp", "data": "/var/lib/devspace"}
    assert made["securityContext"]["readOnlyRootFilesystem"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "bootstrap-admin"]
    assert volume["secret"] == {
        "secretName": SECRET,
        "defaultMode": 0o440,
        "items": [{"key": "password", "path": "password"}],
    }
    # Only the init container sees the password, not the server that faces the network.
    (api,) = pod["containers"]
    assert "bootstrap-admin" not in {m["name"] for m in api["volumeMounts"]}


def test_on_postgresql_every_replica_makes_it_if_missing(helm: Helm) -> None:
    docs = helm.template(merged(BASE, POSTGRES, ADMIN))
    pod = _api_pod(docs)
    # The migrate hook Job runs before the chart's Secrets exist, so it cannot mount the
    # password: the API pods do it, after the Job has migrated.
    assert list(_init(pod)) == ["create-admin"]
    mounts = {m["name"] for m in _init(pod)["create-admin"]["volumeMounts"]}
    assert mounts == {"bootstrap-admin", "tmp"}
    (job,) = [d for d in docs if d["kind"] == "Job"]
    assert "bootstrap-admin" not in str(job)


def test_the_admins_own_secret_replaces_the_generated_one(helm: Helm) -> None:
    values = {"bootstrapAdmin": {"username": "root", "existingSecret": "my-admin"}}
    docs = helm.template(merged(BASE, values))
    assert not [d for d in docs if d["metadata"]["name"].endswith("-bootstrap-admin")]
    pod = _api_pod(docs)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "bootstrap-admin"]
    assert volume["secret"]["secretName"] == "my-admin"
    assert "--username=root" in _init(pod)["create-admin"]["command"]


@pytest.mark.parametrize("username", ["Admin", "-admin", "a b", "a" * 65, "admin!"])
def test_the_schema_refuses_a_username_the_server_would(helm: Helm, username: str) -> None:
    with pytest.raises(HelmFailed) as failed:
        helm.template(merged(BASE, {"bootstrapAdmin": {"username": username}}))
    assert f"at '/bootstrapAdmin/username': '{username}' does not match pattern" in str(
        failed.value
    )


def test_an_own_secret_without_a_username_is_refused(helm: Helm) -> None:
    with pytest.raises(HelmFailed) as failed:
        helm.template(merged(BASE, {"bootstrapAdmin": {"existingSecret": "my-admin"}}))
    assert "bootstrapAdmin.existingSecret is my-admin but bootstrapAdmin.username is empty" in str(
        failed.value
    )


def test_the_rendered_command_makes_the_admin_once(helm: Helm, tmp_path: Path) -> None:
    """The init container's own command, run twice (a restart) against a migrated database:
    the account is made with the Secret's password, then left alone."""
    docs = helm.template(merged(BASE, ADMIN))
    password = base64.b64decode(named(docs, "Secret", "-bootstrap-admin")["data"]["password"])
    (tmp_path / "password").write_bytes(password)
    url = f"sqlite:///{tmp_path / 'devspace.db'}"
    env = {**os.environ, "DEVSPACE_DATABASE_URL": url}
    env.pop("DEVSPACE_CONFIG_FILE", None)
    subprocess.run([str(SERVER), "migrate"], env=env, check=True, capture_output=True)
    command = _init(_api_pod(docs))["create-admin"]["command"]
    argv = [str(SERVER), *(a.replace(MOUNT, str(tmp_path)) for a in command[1:])]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "created admin 'admin'" in first.stderr
    again = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert "exists already: left as it is" in again.stderr
    engine = db.make_engine(url)
    try:
        with Session(engine) as session:
            user = session.scalars(select(User)).one()
    finally:
        engine.dispose()
    assert (user.username, user.role) == ("admin", Role.ADMIN)
    assert verify_password(user.password_hash, password.decode())


def test_the_api_service_can_be_a_node_port(helm: Helm) -> None:
    values = {"api": {"service": {"type": "NodePort", "nodePort": 30080}}}
    service = named(helm.template(merged(BASE, values)), "Service", "-api")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] == 30080
    assert named(helm.template(BASE), "Service", "-api")["spec"]["type"] == "ClusterIP"
    with pytest.raises(HelmFailed) as failed:
        helm.template(merged(BASE, {"api": {"service": {"nodePort": 30080}}}))
    assert "api.service.nodePort is set but api.service.type is ClusterIP" in str(failed.value)


@pytest.mark.kube
def test_the_password_is_told_and_survives_upgrade_and_reinstall(
    helm: Helm, cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    release = f"ba-{uuid.uuid4().hex[:6]}"
    shared_tenant = tenant_role_exists(client.RbacAuthorizationV1Api(cluster.api))
    values = merged(BASE, ADMIN, {"rbac": {"createTenantClusterRole": not shared_tenant}})
    common = [*cluster.helm_args(namespace), "--values", str(helm.values_file(values))]

    def stored() -> str:
        secret = core.read_namespaced_secret(f"{release}-devspace-bootstrap-admin", namespace)
        return str((secret.data or {})["password"])

    notes = helm("install", release, str(CHART), *common)
    try:
        # The notes say where the password is.
        secret = f"{release}-devspace-bootstrap-admin"
        assert f"get secret {secret} -o jsonpath='{{.data.password}}' | base64 -d" in notes
        first = stored()
        helm("upgrade", release, str(CHART), *common, "--set", "logLevel=DEBUG")
        assert stored() == first
        helm("uninstall", release, *cluster.helm_args(namespace))
        assert stored() == first  # kept: the account it opens is in the kept database
        helm("install", release, str(CHART), *common)
        assert stored() == first
    finally:
        with contextlib.suppress(HelmFailed):
            helm("uninstall", release, *cluster.helm_args(namespace))
