"""Provisioning: how fast `POST /api/v1/spaces` becomes objects in the cluster (issue 4).

The real path end to end: the API (in this process, on a SQLite database) records the space;
`devspace-server reconcile` runs as its own process with the chart's least-privilege
ServiceAccount, finds the change by polling the database, and applies every object; the
test node runs the pods. "Applied" is when the space's Deployment, the last object applied,
appears in a watch on the control plane (so every object before it exists).

Rows (each against its goal, which stands in the peer's columns):
- create-to-applied: one space at a time, `runs` times; median (and p95 in the notes).
- 100 spaces: all POSTed at once; until every Deployment exists (and, in the notes, until
  every pod runs on the test node).
- resync: `devspace-server reconcile --once` with 1,000 spaces in the database (those above
  plus stopped ones, all already applied): the pass's own time as the process reports it.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import Row, Samples, now

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))  # the test bed, the chart's RBAC, test helpers

# isort: off
from kubernetes import client, config, watch  # noqa: E402

from devspace_server import accounts, db  # noqa: E402
from devspace_server.app import create_app  # noqa: E402
from devspace_server.config import load_config  # noqa: E402
from devspace_server.context import state  # noqa: E402
from devspace_server.kube.meta import installation_selector  # noqa: E402
from devspace_server.kube.spec import ClusterSettings  # noqa: E402
from devspace_server.models import Role  # noqa: E402
from reconcile.identity import install_reconciler  # noqa: E402
from server.oauth_flows import bearer, make_token  # noqa: E402
from ssh.conftest import keygen  # noqa: E402
from testbed.cluster import ControlPlane  # noqa: E402
from testbed.node import TestNode  # noqa: E402
# isort: on

SERVER = Path(sys.executable).with_name("devspace-server")
SYSTEM = "devspace-system"
SECRET = "bench-secret-0123456789-abcdefghijklmnopq"  # noqa: S105 - a throwaway bench key
SETTINGS = ClusterSettings(instance="bench", namespace_prefix="bench-")
SPACE = {
    "image": "devspace.test/shell",
    "command": ["sleep", "infinity"],
    "resources": {"cpu_request": "10m", "memory_request": "16Mi"},
    "storage": "64Mi",
}
ONCE_LINE = re.compile(r"reconciled (\d+) spaces in ([0-9.]+) s")


@dataclass
class Seen:
    """When (time.monotonic) each space's namespace first showed a Deployment, and a running
    pod, as a watch on the control plane saw them."""

    applied: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, what: Callable[[], bool], timeout: float, describe: str) -> None:
        with self.changed:
            if not self.changed.wait_for(what, timeout):
                raise TimeoutError(f"bench: {describe} did not happen within {timeout:g} s")


def _watch(kube: client.ApiClient, kind: str, seen: Seen, stop: threading.Event) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    lists = {
        "deployments": apps.list_deployment_for_all_namespaces,
        "pods": core.list_pod_for_all_namespaces,
    }
    selector = installation_selector(SETTINGS)
    while not stop.is_set():
        for event in watch.Watch().stream(lists[kind], label_selector=selector, timeout_seconds=5):
            obj = event["object"]
            at, namespace = time.monotonic(), obj.metadata.namespace
            with seen.changed:
                if kind == "deployments":
                    seen.applied.setdefault(namespace, at)
                elif obj.status and obj.status.phase == "Running":
                    seen.running.setdefault(namespace, at)
                seen.changed.notify_all()


@dataclass
class Bed:
    """The running pieces: the API's test client and token, the reconciler's environment."""

    post: Callable[[dict[str, Any]], dict[str, Any]]
    seen: Seen
    env: dict[str, str]
    kubeconfig: Path
    directory: Path


@contextmanager
def _bed(directory: Path) -> Iterator[Bed]:
    with ExitStack() as stack:
        plane = ControlPlane.start(directory / "control-plane")
        stack.callback(plane.stop)
        node = TestNode.start(kubeconfig=plane.admin_kubeconfig, directory=directory / "node")
        stack.callback(node.stop)
        kubeconfig = install_reconciler(plane, SYSTEM, directory / "reconciler.kubeconfig")
        keygen(directory / "ca")
        url = f"sqlite:///{directory / 'devspace.db'}"
        engine = db.make_engine(url)
        db.migrate(engine)
        engine.dispose()
        shared = {
            "DEVSPACE_DATABASE_URL": url,
            "DEVSPACE_LEASE_NAMESPACE": SYSTEM,
            "DEVSPACE_CLUSTER_INSTANCE": SETTINGS.instance,
            "DEVSPACE_NAMESPACE_PREFIX": SETTINGS.namespace_prefix,
            "DEVSPACE_SIDECAR_IMAGE": "devspace.test/sshd",
            "DEVSPACE_QUOTA_DEFAULTS": "spaces=5000",
            # As the chart: host keys sealed by the API, opened by the reconciler.
            "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS": base64.b64encode(os.urandom(32)).decode(),
        }
        app = create_app(
            load_config(
                {
                    **shared,
                    "DEVSPACE_DATA_DIR": str(directory),
                    "DEVSPACE_SECRET_KEY": SECRET,
                    "DEVSPACE_PUBLIC_URL": "http://localhost:8080",
                    "DEVSPACE_SSH_CA_KEY_FILE": str(directory / "ca"),
                }
            )
        )
        with app.app_context(), state().sessions() as session:
            user = accounts.create_user(session, username="bench", role=Role.USER, password=None)
            session.commit()
            headers = bearer(make_token(app, user, "spaces"))
        web = app.test_client()

        def post(body: dict[str, Any]) -> dict[str, Any]:
            response = web.post("/api/v1/spaces", json=body, headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"bench: POST /api/v1/spaces: {response.get_json()}")
            answer: dict[str, Any] = response.get_json()
            return answer

        # The reconciler gets the database, the cluster settings and the CA's public key only.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
        env |= shared | {"DEVSPACE_SSH_CA_PUBLIC_KEYS": (directory / "ca.pub").read_text()}
        seen, stop = Seen(), threading.Event()
        admin = config.new_client_from_config(str(plane.admin_kubeconfig))
        stack.callback(admin.close)
        stack.callback(stop.set)
        for kind in ("deployments", "pods"):
            threading.Thread(target=_watch, args=(admin, kind, seen, stop), daemon=True).start()
        yield Bed(post, seen, env, kubeconfig, directory)


@contextmanager
def _reconciler(bed: Bed) -> Iterator[None]:
    log = (bed.directory / "reconciler.log").open("ab")
    argv = [str(SERVER), "reconcile", "--kubeconfig", str(bed.kubeconfig)]
    process = subprocess.Popen(argv, env=bed.env, stdout=log, stderr=log)
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def _goal_row(name: str, what: str, ours: Samples, goal: float) -> Row:
    # No peer here: the goal itself stands in the peer's columns, so the ratio is the share
    # of the goal used and the row is met at or below 1.
    return Row(name, what, ours, "goal (issue 4)", Samples((goal,), "s"), 1.0, False, now())


def _one_at_a_time(bed: Bed, runs: int) -> list[float]:
    times = []
    for n in range(runs):
        started = time.monotonic()
        namespace: str = bed.post({"name": f"one-{n}", **SPACE})["namespace"]
        bed.seen.wait(lambda ns=namespace: ns in bed.seen.applied, 30, f"one-{n} applied")
        times.append(bed.seen.applied[namespace] - started)
    return times


def _burst(bed: Bed, count: int) -> tuple[float, float | None]:
    started = time.monotonic()
    namespaces = [bed.post({"name": f"burst-{n}", **SPACE})["namespace"] for n in range(count)]
    bed.seen.wait(
        lambda: all(ns in bed.seen.applied for ns in namespaces), 300, f"{count} spaces applied"
    )
    applied = max(bed.seen.applied[ns] for ns in namespaces) - started
    try:
        bed.seen.wait(
            lambda: all(ns in bed.seen.running for ns in namespaces), 300, f"{count} pods running"
        )
    except TimeoutError as error:
        print(error, file=sys.stderr)
        return applied, None
    return applied, max(bed.seen.running[ns] for ns in namespaces) - started


def _fill(bed: Bed, total: int) -> float:
    """Stopped spaces until the database holds `total`; seconds until all were applied."""
    started = time.monotonic()
    have = len(bed.seen.applied)
    namespaces = [
        bed.post({"name": f"idle-{n}", **SPACE, "stopped": True})["namespace"]
        for n in range(total - have)
    ]
    bed.seen.wait(
        lambda: all(ns in bed.seen.applied for ns in namespaces), 1200, f"{total} spaces applied"
    )
    return time.monotonic() - started


def _resync(bed: Bed) -> tuple[float, float, int]:
    """`reconcile --once`: (the pass's own seconds, the process's wall seconds, spaces)."""
    started = time.monotonic()
    argv = [str(SERVER), "reconcile", "--once", "--kubeconfig", str(bed.kubeconfig)]
    done = subprocess.run(
        argv, check=False, env=bed.env, capture_output=True, text=True, timeout=900
    )
    wall = time.monotonic() - started
    (bed.directory / "once.log").write_text(done.stderr)
    print("".join(f"bench:   {line}\n" for line in done.stderr.splitlines()[-4:]), file=sys.stderr)
    found = ONCE_LINE.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"bench: reconcile --once failed: {done.stderr[-2000:]}")
    return float(found.group(2)), wall, int(found.group(1))


def provision(runs: int, burst: int, total: int) -> tuple[list[Row], list[str]]:
    """The provisioning rows and notes (p95, pods running, process wall time)."""
    directory = Path(tempfile.mkdtemp(prefix="devspace-bench-provision-"))
    rows, notes = [], []
    try:
        with _bed(directory) as bed:
            with _reconciler(bed):
                print(f"bench: provision: {runs} spaces one at a time", file=sys.stderr)
                times = _one_at_a_time(bed, runs)
                rows.append(
                    _goal_row(
                        "provision",
                        "POST /api/v1/spaces to every object applied (s)",
                        Samples(tuple(times), "s"),
                        1.0,
                    )
                )
                notes.append(f"provision: p95 {_p95(times) * 1000:.0f} ms over {runs}")
                print(f"bench: provision: {burst} spaces at once", file=sys.stderr)
                applied, running = _burst(bed, burst)
                rows.append(
                    _goal_row(
                        "provision",
                        f"{burst} spaces POSTed at once, until all applied (s)",
                        Samples((applied,), "s"),
                        30.0,
                    )
                )
                notes.append(
                    f"provision: {burst} pods running on the test node after "
                    + (f"{running:.1f} s" if running is not None else "more than 300 s")
                )
                print(f"bench: provision: filling to {total} spaces", file=sys.stderr)
                filled = _fill(bed, total)
                notes.append(
                    f"provision: {total - runs - burst} stopped spaces applied in {filled:.1f} s"
                )
            print(f"bench: provision: resync of {total} spaces", file=sys.stderr)
            seconds, wall, spaces = _resync(bed)
            rows.append(
                _goal_row(
                    "provision",
                    f"one full resync (`reconcile --once`) of {spaces:,} spaces (s)",
                    Samples((seconds,), "s"),
                    60.0,
                )
            )
            notes.append(f"provision: `reconcile --once` took {wall:.1f} s wall in all")
    except BaseException:
        print(f"bench: the provisioning bed's logs are in {directory}", file=sys.stderr)
        raise
    subprocess.run(["rm", "-rf", str(directory)], check=False)
    return rows, notes
