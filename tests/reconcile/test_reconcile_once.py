"""`devspace-server reconcile --once`, run as the reconciler runs in production: its own
process, the chart's ServiceAccount, and only the SSH CA's public key — its private key file
named but absent, so a reconciler that still loaded it could not start."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from kubernetes import client

from devspace_server.kube.meta import namespace_name
from devspace_server.kube.spec import CA_SECRET, ClusterSettings
from devspace_server.models import Role
from reconcile.spaceapp import caller, reconciler_environment

pytestmark = [pytest.mark.kube]
SERVER = Path(sys.executable).with_name("devspace-server")
SPACE = {"image": "devspace.test/shell", "storage": "64Mi", "stopped": True}


@pytest.fixture
def reconcile_once(
    app: Flask, settings: ClusterSettings, reconciler_kubeconfig: Path, reconciler_namespace: str
) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Runs `devspace-server reconcile --once` as the chart's ServiceAccount, trusting the
    public key given, with the CA's private key file named but absent."""

    def run(public_key: str) -> subprocess.CompletedProcess[str]:
        env = reconciler_environment(app, settings, reconciler_namespace)
        env |= {
            "DEVSPACE_SSH_CA_PUBLIC_KEYS": public_key,
            # Named, and not there: loading it would fail.
            "DEVSPACE_SSH_CA_KEY_FILE": "/nonexistent/ssh_ca_key",
        }
        argv = [str(SERVER), "reconcile", "--once", "--kubeconfig", str(reconciler_kubeconfig)]
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    return run


def test_one_pass_with_public_keys_only_then_a_failure_exits_non_zero(
    app: Flask,
    settings: ClusterSettings,
    ssh_ca: Path,
    reconcile_once: Callable[[str], subprocess.CompletedProcess[str]],
    kube: client.ApiClient,
) -> None:
    public_key = ssh_ca.with_suffix(".pub").read_text()
    web = app.test_client()
    alice = caller(app, web, "alice", Role.USER, "spaces")
    made = alice("POST", "/api/v1/spaces", json={"name": "work", **SPACE})

    done = reconcile_once(public_key)
    assert done.returncode == 0, done.stderr
    assert "reconciled 1 spaces in" in done.stderr
    assert "SSH_CA_KEY_FILE is set but the reconciler does not read it" in done.stderr
    secret = client.CoreV1Api(kube).read_namespaced_secret(CA_SECRET, made["namespace"])
    trusted = base64.b64decode(secret.data["ca.pub"]).decode()
    assert public_key.split()[1] in trusted
    assert alice("GET", "/api/v1/spaces/work")["phase"] == "stopped"

    # A second space whose namespace someone else made first: refused, and the pass says so.
    other = alice("POST", "/api/v1/spaces", json={"name": "other", **SPACE})
    taken = namespace_name(other["id"], settings)
    client.CoreV1Api(kube).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=taken))
    )
    try:
        done = reconcile_once(public_key)
    finally:
        client.CoreV1Api(kube).delete_namespace(taken)
    assert done.returncode == 1
    assert "reconciled 2 spaces in" in done.stderr
    assert f"1 failed ({other['id']})" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_private_key_alone_is_refused_in_one_line(
    app: Flask,
    settings: ClusterSettings,
    ssh_ca: Path,
    reconciler_kubeconfig: Path,
    reconciler_namespace: str,
) -> None:
    env = reconciler_environment(app, settings, reconciler_namespace)
    env["DEVSPACE_SSH_CA_KEY_FILE"] = str(ssh_ca)
    argv = [str(SERVER), "reconcile", "--once", "--kubeconfig", str(reconciler_kubeconfig)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "DEVSPACE_SSH_CA_PUBLIC_KEYS is not set" in done.stderr
    assert "Traceback" not in done.stderr
