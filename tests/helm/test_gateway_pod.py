"""The chart's gateway run for real on the test node, end to end: Debian's sshd with the host
key, CA keys, shared secret and mounts the chart generated, in front of a devspace API
configured from the very Secrets and settings the chart gives its API container.

Only the gateway and a sidecar run in pods here: the test node knows `devspace.test/sshd`
(sshd-image's files on Debian's OpenSSH) but not the server image. The API runs in this
process (as in tests/ssh), reached by the gateway through `gateway.serverUrl`. The test
node enforces NetworkPolicies, so the chart's gateway egress policy is exercised too.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from kubernetes import client
from ssh.gateway_bed import PORT, LiveServer, make_person, start_space

from devspace_server import db
from devspace_server.app import create_app
from devspace_server.config import load_config
from devspace_server.context import state
from testbed.eventually import eventually
from testbed.node import TestNode

from .chart import BASE, CHART, Doc, Helm, HelmFailed, merged, named
from .conftest import Cluster
from .podenv import Objects, container_environ, find_container

pytestmark = [pytest.mark.kube, pytest.mark.node]


@pytest.fixture
def live(test_node: TestNode) -> Iterator[LiveServer]:
    """An HTTP server on the test node's bridge; its app is set once the chart is installed."""
    server = LiveServer(Flask("not-yet-configured"), test_node.gateway)
    yield server
    server.stop()
    if server.app.name != "not-yet-configured":
        with server.app.app_context():
            state().engine.dispose()


def _installed(core: client.CoreV1Api, namespace: str) -> list[Doc]:
    """The Secrets and ConfigMaps in `namespace`, as the documents helm rendered them."""
    docs: list[Doc] = [
        {"kind": "Secret", "metadata": {"name": s.metadata.name}, "data": s.data or {}}
        for s in core.list_namespaced_secret(namespace).items
    ]
    docs += [
        {"kind": "ConfigMap", "metadata": {"name": c.metadata.name}, "data": c.data or {}}
        for c in core.list_namespaced_config_map(namespace).items
    ]
    return docs


def _api_app(helm: Helm, values: dict[str, object], installed: list[Doc], root: Path) -> Flask:
    """The API as the chart's API container would load it, on a local SQLite database."""
    api_pod = named(helm.template(values), "Deployment", "-api")["spec"]["template"]["spec"]
    environ = container_environ(
        api_pod, find_container(api_pod, "api"), Objects(installed, {}), root
    )
    environ["DEVSPACE_PUBLIC_URL"] = "http://localhost:8080"  # served here, not at publicUrl
    config = load_config(environ)
    engine = db.make_engine(config.database_url)
    db.ensure_sqlite_directory(config.database_url)
    db.migrate(engine)
    engine.dispose()
    return create_app(config)


def test_a_certificate_from_the_api_passes_the_charts_gateway(
    helm: Helm,
    cluster: Cluster,
    live: LiveServer,
    namespace: str,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(cluster.api)
    release = f"gw-{uuid.uuid4().hex[:6]}"
    values = merged(
        BASE,
        {
            "sshdImage": {"repository": "devspace.test/sshd", "tag": "test"},
            "gateway": {"replicas": 1, "serverUrl": live.url},
            # Shared with whatever else this session installed; not this test's subject.
            "rbac": {"createTenantClusterRole": False},
        },
    )
    common = cluster.helm_args(namespace)
    helm("install", release, str(CHART), *common, "--values", str(helm.values_file(values)))
    namespaces: list[str] = []
    try:
        installed = _installed(core, namespace)
        # The template's names are those of release `rel`; the installed objects' are ours.
        renamed = [
            {**d, "metadata": {"name": d["metadata"]["name"].replace(release, "rel", 1)}}
            for d in installed
        ]
        live.app = _api_app(helm, values, renamed, tmp_path / "api")
        selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=gateway"

        def ready_ip() -> str | None:
            for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
                conditions = {c.type: c.status for c in pod.status.conditions or []}
                if conditions.get("Ready") == "True":
                    return str(pod.status.pod_ip)
            return None

        gateway_ip = eventually(ready_ip, what="the gateway pod to be ready", timeout=60)
        published = core.read_namespaced_config_map(f"{release}-devspace-ssh", namespace).data
        gateway_key = published["gateway_host_key.pub"].strip()
        scan = subprocess.run(
            ["ssh-keyscan", "-p", str(PORT), "-t", "ecdsa", "-T", "5", gateway_ip],
            capture_output=True,
            text=True,
            check=False,
        )
        (line,) = [x for x in scan.stdout.splitlines() if not x.startswith("#")]
        assert line.split()[1:3] == gateway_key.split()[:2]

        # A person with a certificate from that API, and a running sidecar of theirs.
        alice = make_person(live.app, tmp_path, "alice")
        start_space(core, live, alice, namespaces)
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(
            f"[{gateway_ip}]:{PORT} {gateway_key}\n"
            f"[{alice.pod_ip}]:{PORT} {alice.host_public_key}\n"
        )
        config = tmp_path / "ssh_config"
        config.write_text(
            "Host *\n"
            f"  Port {PORT}\n"
            "  BatchMode yes\n"
            "  IdentitiesOnly yes\n"
            f"  IdentityFile {alice.key}\n"
            f"  CertificateFile {alice.key}-cert.pub\n"
            "  StrictHostKeyChecking yes\n"
            f"  UserKnownHostsFile {known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  ConnectTimeout 5\n"
        )
        jump = ["ssh", "-F", str(config), "-J", f"devspace@{gateway_ip}", f"dev@{alice.pod_ip}"]

        def through() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*jump, "echo through-the-chart"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                stdin=subprocess.DEVNULL,
            )

        # The chart's NetworkPolicy lets the gateway reach sidecars only in namespaces that
        # carry this installation's labels, which start_space's namespace does not yet have.
        refused = through()
        assert refused.returncode != 0
        assert "timed out" in refused.stderr, refused.stderr
        labels = {"app.kubernetes.io/managed-by": "devspace", "devspace.dev/instance": release}
        core.patch_namespace(namespaces[0], {"metadata": {"labels": labels}})
        done = eventually(
            lambda: (result := through()).returncode == 0 and result,
            what="ssh through the gateway to alice's sidecar",
            timeout=30,
        )
        assert done.stdout.strip() == "through-the-chart", done.stderr
    finally:
        for other in namespaces:
            core.delete_namespace(other)
        with contextlib.suppress(HelmFailed):
            helm("uninstall", release, *common)
