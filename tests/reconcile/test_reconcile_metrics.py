"""The reconciler's Prometheus metrics as a scraper sees them: `devspace-server reconcile
--probes` in its own process, as the chart's ServiceAccount, reconciling real spaces on the
test cluster; its `/metrics` counts the passes that worked and the one that failed."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from devspace_server.kube.meta import SPACE_ID, namespace_name
from devspace_server.kube.spec import ClusterSettings
from devspace_server.models import Role
from reconcile.spaceapp import caller, reconciler_environment
from testbed.eventually import eventually
from testbed.process import free_port

pytestmark = [pytest.mark.kube]
SERVER = Path(sys.executable).with_name("devspace-server")
SPACE = {"image": "devspace.test/shell", "storage": "64Mi", "stopped": True}
TOKEN = "metrics-token-for-the-test-0123456789"  # noqa: S105 - a test value


@pytest.fixture
def probes(
    app: Flask,
    settings: ClusterSettings,
    ssh_ca: Path,
    reconciler_kubeconfig: Path,
    reconciler_namespace: str,
) -> Iterator[str]:
    """`devspace-server reconcile --probes` running; yields the probes' base URL."""
    env = reconciler_environment(app, settings, reconciler_namespace)
    env |= {
        "DEVSPACE_SSH_CA_PUBLIC_KEYS": ssh_ca.with_suffix(".pub").read_text(),
        "DEVSPACE_METRICS_TOKEN": TOKEN,
    }
    port = free_port()
    argv = [str(SERVER), "reconcile", "--kubeconfig", str(reconciler_kubeconfig)]
    argv += ["--probes", f"127.0.0.1:{port}"]
    process = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        _, log = process.communicate(timeout=30)
        assert process.returncode == 0, log
        assert "Traceback" not in log


def scrape(base: str, token: str | None = TOKEN) -> Callable[[str, dict[str, str]], float]:
    """GET /metrics; returns a lookup (name, labels) -> value (0 when the sample is absent)."""
    request = urllib.request.Request(f"{base}/metrics")  # noqa: S310 - loopback
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return lambda name, labels: samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_passes_and_failures_are_counted(
    app: Flask, settings: ClusterSettings, probes: str, kube: client.ApiClient
) -> None:
    web = app.test_client()
    alice = caller(app, web, "alice", Role.USER, "spaces")
    made = alice("POST", "/api/v1/spaces", json={"name": "work", **SPACE})
    eventually(
        lambda: alice("GET", "/api/v1/spaces/work")["phase"] == "stopped",
        what="the space reconciled",
    )

    def passes(result: str) -> float:
        return scrape(probes)("devspace_reconcile_duration_seconds_count", {"result": result})

    eventually(lambda: passes("ok") >= 1, what="a pass counted", timeout=10)
    assert scrape(probes)("devspace_reconcile_errors_total", {"kind": "cluster"}) == 0

    # The namespace relabelled as another space's: the reconciler must not touch it, and it
    # counts the refusal as a failed pass. The change to the space queues that pass at once
    # (the relabelled namespace's own watch event names the other space, and the periodic
    # resync is a minute away).
    core = client.CoreV1Api(kube)
    namespace = namespace_name(made["id"], settings)
    core.patch_namespace(namespace, {"metadata": {"labels": {SPACE_ID: "someone-else"}}})
    alice("PATCH", "/api/v1/spaces/work", json={"env": {"CHANGED": "1"}})
    eventually(
        lambda: scrape(probes)("devspace_reconcile_errors_total", {"kind": "cluster"}) >= 1,
        what="the refused pass counted as a cluster error",
        timeout=30,
    )
    assert passes("cluster-error") >= 1


def test_metrics_need_the_token(probes: str) -> None:
    eventually(lambda: _status(f"{probes}/healthz") == 200, what="/healthz", timeout=30)
    assert _status(f"{probes}/metrics") == 401
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(probes, token="wrong-token")  # noqa: S106 - a test value
    refused.value.close()
    assert refused.value.code == 401


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
            return int(answer.status)
    except urllib.error.HTTPError as error:
        with error:
            return error.code
    except OSError:
        return 0
