"""`devspace-server serve --kubeconfig`: the embedded default reconciles a real cluster too,
and `devspace-server reconcile` fails in one clear line when it cannot reach one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_key_encryption import fresh_host_key_encryption
from kubernetes import client

from devspace_server import accounts, db
from devspace_server.auth import tokens
from devspace_server.kube.spec import ClusterSettings
from devspace_server.models import ApiToken, Role, TokenKind, utcnow
from reconcile.spaceapp import forget_lease
from testbed.eventually import eventually
from testbed.process import Process, free_port, wait_until

pytestmark = [pytest.mark.kube]
SERVER = Path(sys.executable).with_name("devspace-server")
TEST_SECRET = "a-test-secret-0123456789-abcdefghijklmnop"  # noqa: S105 - a test key


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
    return {**env, "HOME": str(home), "DEVSPACE_DATA_DIR": str(home / "data"), **extra}


def reconcile_children(pid: int) -> list[int]:
    """Processes running `reconcile --embedded <pid>`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"reconcile" in argv and str(pid).encode() in argv:
                found.append(int(entry.name))
    return found


def token_for_new_user(home: Path) -> str:
    """A personal token (scope `spaces`) of a new user, written straight to serve's database."""
    engine = db.make_engine(f"sqlite:///{home / 'data' / 'devspace.db'}")
    try:
        with db.make_sessionmaker(engine)() as session:
            user = accounts.create_user(session, username="alice", role=Role.USER, password=None)
            secret = tokens.new_secret(TokenKind.PERSONAL)
            session.add(
                ApiToken(
                    token_hash=tokens.digest(secret),
                    kind=TokenKind.PERSONAL,
                    user_id=user.id,
                    name="test",
                    scope="spaces",
                    expires_at=utcnow().replace(year=utcnow().year + 1),
                )
            )
            session.commit()
    finally:
        engine.dispose()
    return secret


def call(port: int, token: str, method: str, path: str, body: object = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return json.load(response)


@pytest.fixture
def cleanup(kube: client.ApiClient, settings: ClusterSettings) -> Iterator[None]:
    yield
    core = client.CoreV1Api(kube)
    selector = f"devspace.dev/instance={settings.instance}"
    for ns in core.list_namespace(label_selector=selector).items:
        core.delete_namespace(ns.metadata.name)


@pytest.mark.node
@pytest.mark.usefixtures("test_node", "cleanup")
def test_serve_with_a_kubeconfig_runs_spaces_and_its_reconciler_dies_with_it(
    tmp_path: Path,
    reconciler_kubeconfig: Path,
    reconciler_namespace: str,
    settings: ClusterSettings,
    kube: client.ApiClient,
) -> None:
    forget_lease(kube, reconciler_namespace)
    port = free_port()
    env = environment(
        tmp_path,
        DEVSPACE_KUBECONFIG=str(reconciler_kubeconfig),
        DEVSPACE_LEASE_NAMESPACE=reconciler_namespace,
        DEVSPACE_CLUSTER_INSTANCE=settings.instance,
        DEVSPACE_NAMESPACE_PREFIX=settings.namespace_prefix,
        DEVSPACE_SIDECAR_IMAGE="devspace.test/sshd",
    )
    served = Process(
        "devspace-server",
        [str(SERVER), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        tmp_path / "serve.log",
        env=env,
    )
    try:
        wait_until(
            lambda: bool(reconcile_children(served.popen.pid)),
            what="serve and its reconciler",
            timeout=30,
            process=served,
        )
        token = token_for_new_user(tmp_path)
        body = {"name": "work", "image": "devspace.test/shell", "command": ["sleep", "infinity"]}
        created = call(port, token, "POST", "/api/v1/spaces", body)
        assert created["namespace"].startswith(settings.namespace_prefix)

        def running() -> dict[str, Any] | None:
            shown: dict[str, Any] = call(port, token, "GET", "/api/v1/spaces/work")
            return shown if shown["phase"] == "running" else None

        shown = eventually(running, what="the space to run", timeout=90)
        assert shown["pod_ip"]
        (child,) = reconcile_children(served.popen.pid)
        # serve killed outright: its reconciler notices and stops within seconds.
        os.kill(served.popen.pid, signal.SIGKILL)
        eventually(
            lambda: (
                not Path(f"/proc/{child}").exists()
                or "Z" in Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1][:3]
            ),
            what="the reconciler to stop with serve",
            timeout=15,
        )
    finally:
        served.stop()


def test_reconcile_without_a_cluster_says_so_in_one_line(tmp_path: Path) -> None:
    env = environment(
        tmp_path,
        DEVSPACE_SECRET_KEY=TEST_SECRET,
        DEVSPACE_PUBLIC_URL="http://localhost:8080",
        DEVSPACE_KUBECONFIG=str(tmp_path / "missing"),
        **fresh_host_key_encryption(),
    )
    result = subprocess.run(
        [str(SERVER), "reconcile"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: the kubeconfig {tmp_path / 'missing'} does not exist"
    ]
    env.pop("DEVSPACE_KUBECONFIG")
    result = subprocess.run(
        [str(SERVER), "reconcile"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "set DEVSPACE_KUBECONFIG or --kubeconfig" in result.stderr
    assert "Traceback" not in result.stderr
