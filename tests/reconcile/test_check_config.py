"""`devspace-server check-config --reconciler`, run as an admin runs it against the test cluster:
the chart's ServiceAccount passes; an identity without the chart's roles, a cluster that does
not answer, and a Lease namespace that does not exist are each reported in a line that says
what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from host_key_encryption import fresh_host_key_encryption
from kubernetes import client

from devspace_server.reconcile.access import REQUIRED
from reconcile.chartfiles import load_documents
from testbed.cluster import ControlPlane, ExistingCluster
from testbed.process import free_port

pytestmark = [pytest.mark.kube]
SERVER = Path(sys.executable).with_name("devspace-server")


def check(settings: dict[str, str], kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
    argv = [str(SERVER), "check-config", "--reconciler", "--kubeconfig", str(kubeconfig)]
    return subprocess.run(
        argv, env=env | settings, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def settings(tmp_path: Path, ssh_ca: Path, reconciler_namespace: str) -> dict[str, str]:
    return {
        "DEVSPACE_DATABASE_URL": f"sqlite:///{tmp_path}/devspace.db",
        "DEVSPACE_LEASE_NAMESPACE": reconciler_namespace,
        "DEVSPACE_SSH_CA_PUBLIC_KEYS": ssh_ca.with_suffix(".pub").read_text(),
        **fresh_host_key_encryption(),
    }


@pytest.fixture
def unbound_kubeconfig(
    kube: client.ApiClient,
    control_plane: ControlPlane | ExistingCluster,
    reconciler_namespace: str,
    tmp_path: Path,
) -> Iterator[Path]:
    """A ServiceAccount that exists and authenticates, with no role bound to it."""
    core = client.CoreV1Api(kube)
    name = f"nobody-{uuid.uuid4().hex[:6]}"
    account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    core.create_namespaced_service_account(reconciler_namespace, account)
    yield control_plane.serviceaccount_kubeconfig(
        reconciler_namespace, name, tmp_path / "kubeconfig"
    )
    core.delete_namespaced_service_account(name, reconciler_namespace)


def test_the_charts_identity_passes_and_says_what_it_reached(
    settings: dict[str, str], reconciler_kubeconfig: Path
) -> None:
    result = check(settings, reconciler_kubeconfig)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "answers, Kubernetes v1." in result.stderr
    assert "every permission the reconciler needs is granted" in result.stderr
    assert "the configuration is fine" in result.stderr


def test_every_missing_permission_is_named(
    settings: dict[str, str], unbound_kubeconfig: Path, reconciler_namespace: str
) -> None:
    result = check(settings, unbound_kubeconfig)
    assert result.returncode == 1
    refused = result.stdout.splitlines()
    assert len(refused) == sum(len(rule.verbs) for rule in REQUIRED), result.stdout
    assert "the reconciler may not create namespaces (cluster-wide): bind it to" in result.stdout
    assert (
        f'the reconciler may not update leases.coordination.k8s.io "devspace-reconciler" '
        f"in namespace {reconciler_namespace}"
    ) in result.stdout
    assert 'bind clusterroles.rbac.authorization.k8s.io "devspace-tenant"' in result.stdout
    assert "Traceback" not in result.stderr


def test_a_cluster_that_does_not_answer_is_reported(
    settings: dict[str, str], reconciler_kubeconfig: Path, tmp_path: Path
) -> None:
    port = free_port()
    kubeconfig = yaml.safe_load(reconciler_kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(kubeconfig))
    result = check(settings, dead)
    assert result.returncode == 1
    assert result.stdout.startswith(f"cluster https://127.0.0.1:{port}: asking ")
    assert "Traceback" not in result.stderr


def test_a_missing_lease_namespace_and_public_keys_are_reported(
    settings: dict[str, str], reconciler_kubeconfig: Path
) -> None:
    settings["DEVSPACE_LEASE_NAMESPACE"] = "no-such-namespace"
    del settings["DEVSPACE_SSH_CA_PUBLIC_KEYS"]
    result = check(settings, reconciler_kubeconfig)
    assert result.returncode == 1
    problems = result.stdout
    assert "DEVSPACE_SSH_CA_PUBLIC_KEYS is not set: sidecars would trust no certificate" in problems
    assert "DEVSPACE_LEASE_NAMESPACE: the namespace no-such-namespace does not exist" in problems


def test_a_missing_host_key_encryption_key_is_reported(
    settings: dict[str, str], reconciler_kubeconfig: Path
) -> None:
    del settings["DEVSPACE_HOST_KEY_ENCRYPTION_KEYS"]
    result = check(settings, reconciler_kubeconfig)
    assert result.returncode == 1
    assert result.stdout.startswith("DEVSPACE_HOST_KEY_ENCRYPTION_KEYS is not set: ")
    assert "will not store the sidecars' host private keys unencrypted" in result.stdout
    assert "Traceback" not in result.stderr


def test_what_is_checked_is_what_the_chart_grants() -> None:
    """One contract, two sides: check-config asks about exactly the chart's rules."""

    def permissions(rules: list[dict[str, object]], in_lease_namespace: bool) -> set[tuple]:
        return {
            (group, resource, verb, name, in_lease_namespace)
            for rule in rules
            for group in rule["apiGroups"]  # type: ignore[attr-defined]
            for resource in rule["resources"]  # type: ignore[attr-defined]
            for verb in rule["verbs"]  # type: ignore[attr-defined]
            for name in rule.get("resourceNames", [None])  # type: ignore[attr-defined]
        }

    granted: set[tuple] = set()
    for role in load_documents("reconciler-rbac.yaml"):
        granted |= permissions(role["rules"], in_lease_namespace=role["kind"] == "Role")
    checked = {
        (rule.group, rule.resource, verb, rule.name, rule.in_lease_namespace)
        for rule in REQUIRED
        for verb in rule.verbs
    }
    assert checked == granted
