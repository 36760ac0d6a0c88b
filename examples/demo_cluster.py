"""The demo on an existing cluster: `examples/demo.py --kubeconfig PATH`.

Installs devspace into the cluster with the Helm chart (helm/devspace) and a first admin
(`bootstrapAdmin`), waits for its Deployments, signs the CLI in as that admin with the device
flow (the code approved over plain HTTP, as a browser would), and runs `devspace up` on
examples/webapp, as the test bed's demo does. The CLI talks to the API over HTTP and to the
gateway over SSH only; the Kubernetes API serves the install, the password and the clean-up.
On exit the space is deleted, the release uninstalled and the namespace removed (if this made
it), unless --keep.

The cluster must be able to pull the images. The defaults are the chart's own
(ghcr.io/devspace/server and ghcr.io/devspace/sshd), which have not been published yet: build
the two Dockerfiles, push them, and give --image-repository. The dev pod runs the project's
image (python:3.12-slim) unless --dev-image. This machine must reach the gateway Service (a
LoadBalancer address, or a node port on a node's address) and the API: the server allows plain
http only on 127.0.0.1, so without --api-url (https://, your Ingress) the API is published on
a node port and reached on 127.0.0.1, which works when this machine is a node (k3s,
`minikube --driver=none`, the test bed).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from demo_story import (
    BY_HAND,
    DEVSPACE,
    REPOSITORY,
    check,
    cli_environment,
    eventually,
    free_port,
    project,
    say,
    sign_in,
)
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

CHART = REPOSITORY / "helm" / "devspace"
ADMIN = "demo"
SPACE = "webapp"  # examples/webapp/devspace.yaml's name
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
TEARDOWN = """
To remove it by hand (what this does on exit unless --keep):
  helm uninstall {release} --namespace {namespace} --kubeconfig {kubeconfig}
  kubectl --kubeconfig {kubeconfig} delete namespace {namespace}   # kept Secrets and the database
"""


class Failed(RuntimeError):
    """A step of the demo failed; the message says which and why."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="examples/demo.py",
        description=__doc__.split("\n\n")[1],
        epilog=__doc__.split("\n\n")[2],
    )
    add = parser.add_argument
    add("--kubeconfig", type=Path, required=True, metavar="PATH", help="the cluster to use")
    add("--check", action="store_true", help="run the story unattended; exit 0 if it all works")
    add("--namespace", default="devspace-demo", help="for the release (default: %(default)s)")
    add("--release", default="devspace", help="the Helm release's name (default: %(default)s)")
    add("--image-repository", default="ghcr.io/devspace", help="of server, sshd: %(default)s")
    add("--image-tag", default="", help="their tag (default: the chart's appVersion)")
    add("--dev-image", default="", help="the dev pod's image (default: the project's)")
    add("--api-url", default="", help="https:// address routed to the API (default: node port)")
    add("--gateway-address", default="", help="host[:port] of the gateway (default: found)")
    add(
        "--gateway-service",
        choices=["NodePort", "LoadBalancer"],
        default="NodePort",
        help="its type",
    )
    add("--values", type=Path, action="append", default=[], metavar="FILE", help="more values")
    add("--helm", default=shutil.which("helm") or "", help="the helm 3 binary (default: PATH's)")
    add("--keep", action="store_true", help="leave the installation running on exit")
    add("--timeout", type=float, default=300, help="seconds for the pods to be Ready")
    return parser.parse_args(argv)


class Cluster:
    """The cluster as the demo needs it: names, addresses, readiness, clean-up."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.api = kube_config.new_client_from_config(str(args.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.made_namespace = False
        self.signed_in = False

    def helm(self, *argv: str, timeout: float = 300) -> str:
        common = ["--namespace", self.args.namespace, "--kubeconfig", str(self.args.kubeconfig)]
        done = subprocess.run(
            [self.args.helm, *argv, *common],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise Failed(f"helm {argv[0]} failed: {done.stderr.strip()[-1500:]}")
        return done.stdout

    def ensure_namespace(self) -> None:
        try:
            self.core.read_namespace(self.args.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            meta = client.V1ObjectMeta(name=self.args.namespace, labels=RESTRICTED)
            self.core.create_namespace(client.V1Namespace(metadata=meta))
            self.made_namespace = True
            say(f"made the namespace {self.args.namespace} (Pod Security: restricted)")

    def free_node_port(self) -> int:
        """A node port no Service uses yet, in the default range."""
        used = {
            port.node_port
            for service in self.core.list_service_for_all_namespaces().items
            for port in service.spec.ports or []
            if port.node_port
        }
        return random.choice([p for p in range(30000, 32768) if p not in used])  # noqa: S311

    def node_address(self) -> str:
        """A Ready node's ExternalIP, else its InternalIP."""
        for node in self.core.list_node().items:
            conditions = {c.type: c.status for c in node.status.conditions or []}
            if conditions.get("Ready") != "True":
                continue
            found = {a.type: a.address for a in node.status.addresses or []}
            address = found.get("ExternalIP") or found.get("InternalIP")
            if address:
                return str(address)
        raise Failed("no Ready node with an address: is the cluster up?")

    def tenant_role_exists(self) -> bool:
        try:
            client.RbacAuthorizationV1Api(self.api).read_cluster_role("devspace-tenant")
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def service(self, component: str) -> Any:
        selector = f"app.kubernetes.io/instance={self.args.release}"
        selector += f",app.kubernetes.io/component={component}"
        (found,) = self.core.list_namespaced_service(
            self.args.namespace, label_selector=selector
        ).items
        return found

    def wait_ready(self, timeout: float = 300) -> None:
        """Until every Deployment of the release is Ready. Raises Failed saying why not."""
        apps = client.AppsV1Api(self.api)
        selector = f"app.kubernetes.io/instance={self.args.release}"

        def rolled_out(d: Any) -> bool:
            # Every pod of the latest template Ready, and no pod of an older one left (after
            # an upgrade the old pods are still Ready for a moment).
            want, status = d.spec.replicas or 0, d.status
            return bool(
                (status.observed_generation or 0) >= (d.metadata.generation or 0)
                and (status.updated_replicas or 0) >= want
                and (status.ready_replicas or 0) >= want
                and (status.replicas or 0) == want
            )

        def ready() -> bool:
            items = apps.list_namespaced_deployment(self.args.namespace, label_selector=selector)
            return bool(items.items) and all(rolled_out(d) for d in items.items)

        try:
            eventually(ready, "the release's Deployments being Ready", timeout)
        except RuntimeError as error:
            states = self.pod_states()
            hint = ""
            if "ImagePull" in states:
                hint = (
                    "\nThe cluster cannot pull the images. The chart's defaults "
                    "(ghcr.io/devspace/…) are not published yet: build Dockerfile and "
                    "sshd-image/Dockerfile, push them as <repository>/server and "
                    "<repository>/sshd, and give --image-repository <repository>."
                )
            raise Failed(f"{error}; the pods:\n{states}{hint}") from error

    def pod_states(self) -> str:
        lines = []
        for pod in self.core.list_namespaced_pod(self.args.namespace).items:
            for status in [
                *(pod.status.init_container_statuses or []),
                *(pod.status.container_statuses or []),
            ]:
                state = status.state.waiting or status.state.terminated
                why = f"{state.reason}: {state.message or ''}" if state else "running"
                lines.append(f"  {pod.metadata.name}/{status.name}: {why}"[:400])
        return "\n".join(lines) or "  (none)"

    def admin_password(self) -> str:
        name = f"{self.service('api').metadata.name.removesuffix('-api')}-bootstrap-admin"
        secret = self.core.read_namespaced_secret(name, self.args.namespace)
        return base64.b64decode(secret.data["password"]).decode()

    def space_namespaces(self) -> list[str]:
        selector = (
            f"app.kubernetes.io/managed-by=devspace,devspace.dev/instance={self.args.release}"
        )
        found = self.core.list_namespace(label_selector=selector).items
        return [str(n.metadata.name) for n in found if n.metadata]

    def namespace_gone(self) -> bool:
        try:
            self.core.read_namespace(self.args.namespace)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False


def is_this_machine(address: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def install(cluster: Cluster) -> tuple[str, str]:
    """Install (or upgrade) the release; returns the API's URL and the gateway's address."""
    args = cluster.args
    values: dict[str, Any] = {
        "image": {"repository": f"{args.image_repository}/server", "tag": args.image_tag},
        "sshdImage": {"repository": f"{args.image_repository}/sshd", "tag": args.image_tag},
        "bootstrapAdmin": {"username": ADMIN},
        "gateway": {"replicas": 1, "service": {"type": args.gateway_service}},
        "rbac": {"createTenantClusterRole": not cluster.tenant_role_exists()},
    }
    api_url = args.api_url.rstrip("/")
    if not api_url:
        node = cluster.node_address()
        if not is_this_machine(node):
            raise Failed(
                f"the node's address {node} is not this machine's, and the server allows plain "
                "http only on 127.0.0.1: give --api-url https://… routed to the release's API "
                "Service (for example an Ingress with TLS, in a --values file)"
            )
        port = cluster.free_node_port()
        values["api"] = {"service": {"type": "NodePort", "nodePort": port}}
        api_url = f"http://127.0.0.1:{port}"
    values["publicUrl"] = api_url
    gateway = args.gateway_address
    if not gateway and args.gateway_service == "NodePort":
        port = cluster.free_node_port()
        values["gateway"]["service"]["nodePort"] = port
        gateway = f"{cluster.node_address()}:{port}"
    if gateway:
        values["gateway"]["publicAddress"] = gateway
    extra = [a for path in args.values for a in ("--values", str(path))]
    say(f"helm install {args.release} (API {api_url}, images from {args.image_repository})")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="devspace-demo-") as chosen:
        yaml.safe_dump(values, chosen)
        chosen.flush()
        cluster.helm(
            "upgrade", "--install", args.release, str(CHART), "--values", chosen.name, *extra
        )
    if not gateway:
        gateway = balancer_address(cluster)
        say(f"the gateway is at {gateway}: helm upgrade to publish it")
        cluster.helm(
            "upgrade", args.release, str(CHART), "--reuse-values",
            "--set", f"gateway.publicAddress={gateway}",
        )  # fmt: skip
    return api_url, gateway


def balancer_address(cluster: Cluster, timeout: float = 180) -> str:
    """The gateway's LoadBalancer address, else its node port on a node's address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cluster.service("gateway")
        for ingress in (found.status.load_balancer and found.status.load_balancer.ingress) or []:
            if ingress.ip or ingress.hostname:
                return f"{ingress.ip or ingress.hostname}:{found.spec.ports[0].port}"
        time.sleep(2)
    say("the gateway Service got no LoadBalancer address: using its node port")
    found = cluster.service("gateway")
    return f"{cluster.node_address()}:{found.spec.ports[0].node_port}"


def tear_down(cluster: Cluster, env: dict[str, str]) -> None:
    """Delete the space, uninstall the release, remove the namespace if it was made here."""
    args = cluster.args
    if cluster.signed_in:
        say(f"devspace spaces delete {SPACE}")
        subprocess.run([*DEVSPACE, "spaces", "delete", SPACE, "--yes"], env=env, check=False)
        # The reconciler removes the space's namespace; it must still run meanwhile.
        with contextlib.suppress(RuntimeError):
            eventually(lambda: not cluster.space_namespaces(), "the space's namespace going", 120)
    say(f"helm uninstall {args.release}")
    with contextlib.suppress(Failed):
        cluster.helm("uninstall", args.release, "--wait", timeout=180)
    if cluster.made_namespace:
        say(f"deleting the namespace {args.namespace} (with the kept Secrets and database)")
        cluster.core.delete_namespace(args.namespace)
        eventually(cluster.namespace_gone, f"the namespace {args.namespace} going", 180)
    else:
        say(f"the namespace {args.namespace} was there before: its kept Secrets and PVC stay")


def story(cluster: Cluster, env: dict[str, str], work: Path) -> None:
    """Install, sign in and run `devspace up` (or the unattended check). Raises on failure."""
    args = cluster.args
    port = free_port(8080)
    folder = project(work, port, args.dev_image or None)
    cluster.ensure_namespace()
    api_url, gateway = install(cluster)
    say("waiting for the API, the reconciler and the gateway to be Ready")
    cluster.wait_ready(args.timeout)
    say(f"devspace runs in {args.namespace}: API {api_url}, SSH gateway {gateway}")
    sign_in(api_url, ADMIN, cluster.admin_password(), env)
    say(f"the CLI is signed in as {ADMIN}")
    cluster.signed_in = True
    say(f"the project is {folder}")
    if args.check:
        check(folder, port, env, timeout=240)
        say("all good")
    else:
        print(BY_HAND.format(home=work / "cli", folder=folder, port=port), file=sys.stderr)
        up = subprocess.run([*DEVSPACE, "up"], cwd=folder, env=env, check=False)
        say(f"devspace up exited {up.returncode}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.helm:
        say("no helm on PATH: install helm 3 (https://helm.sh) or give --helm")
        return 2
    try:
        cluster = Cluster(args)
    except (kube_config.ConfigException, OSError) as error:
        say(f"cannot use the kubeconfig {args.kubeconfig}: {error}")
        return 2
    work = Path(tempfile.mkdtemp(prefix="devspace-demo-"))
    env = cli_environment(work / "cli")
    print(
        TEARDOWN.format(release=args.release, namespace=args.namespace, kubeconfig=args.kubeconfig),
        file=sys.stderr,
    )
    code = 0
    try:
        story(cluster, env, work)
    except (RuntimeError, OSError, ApiException, subprocess.TimeoutExpired) as error:
        say(f"failed: {error} (the CLI's logs are kept in {work})")
        code = 1
    except KeyboardInterrupt:
        say("interrupted")
        code = 130
    if args.keep:
        say(f"kept running (--keep); the CLI's folders are in {work / 'cli'}")
    else:
        try:
            tear_down(cluster, env)
        except (RuntimeError, ApiException) as error:
            say(f"tearing down failed: {error}")
            code = code or 1
    cluster.api.close()
    if code == 0 and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
