"""The test bed's Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

Real binaries built by `build-control-plane`, started on 127.0.0.1 with random free ports and a
throwaway CA. There is no scheduler and no kubelet; `testbed.node` plays the node.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

from testbed import pki
from testbed.process import Process, free_port, wait_until

HERE = Path(__file__).resolve().parent
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def build_control_plane() -> Path:
    """Build (or find in the cache) the control-plane binaries; returns their directory."""
    result = subprocess.run(
        [str(HERE / "build-control-plane")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca: Path | None,
    user: str,
    client: pki.KeyPair | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """Write a kubeconfig (JSON, which every client reads as YAML) for one identity."""
    credentials: dict[str, str] = {}
    if client is not None:
        credentials = {"client-certificate": str(client.cert), "client-key": str(client.key)}
    if token is not None:
        credentials = {"token": token}
    context: dict[str, str] = {"cluster": "testbed", "user": user}
    if namespace:
        context["namespace"] = namespace
    cluster = {"server": server}
    if ca is not None:
        cluster["certificate-authority"] = str(ca)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": cluster}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "testbed", "context": context}],
        "current-context": "testbed",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


@dataclass
class ControlPlane:
    """A running control plane. `admin_kubeconfig` has cluster-admin (system:masters)."""

    directory: Path
    server: str
    ca: Path
    admin_kubeconfig: Path
    processes: list[Process] = field(default_factory=list)
    _apiserver_argv: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, directory: Path, binaries: Path | None = None) -> ControlPlane:
        """Start etcd, then kube-apiserver, then kube-controller-manager; wait for readiness.

        Raises testbed.process.StartError with the component's log when one fails to start.
        """
        binaries = binaries or build_control_plane()
        directory.mkdir(parents=True, exist_ok=True)
        certs = pki.CertificateAuthority(directory / "pki")
        serving = certs.issue(
            "apiserver",
            common_name="kube-apiserver",
            hosts=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "10.96.0.1",
            ),
        )
        admin = certs.issue("admin", common_name="testbed-admin", organization="system:masters")
        kcm = certs.issue("kcm", common_name="system:kube-controller-manager")
        sa_private, sa_public = pki.write_signing_key(certs.directory)

        port = free_port()
        server = f"https://127.0.0.1:{port}"
        plane = cls(
            directory=directory,
            server=server,
            ca=certs.cert_path,
            admin_kubeconfig=write_kubeconfig(
                directory / "admin.kubeconfig",
                server=server,
                ca=certs.cert_path,
                user="admin",
                client=admin,
            ),
        )
        try:
            etcd_url = plane._start_etcd(binaries)
            plane._start_apiserver(
                binaries, port, etcd_url, serving=serving, sa_keys=(sa_private, sa_public)
            )
            kcm_config = write_kubeconfig(
                directory / "kcm.kubeconfig",
                server=server,
                ca=certs.cert_path,
                user="kube-controller-manager",
                client=kcm,
            )
            plane._start_controller_manager(binaries, kcm_config, sa_private)
        except BaseException:
            plane.stop()
            raise
        return plane

    def _start_etcd(self, binaries: Path) -> str:
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(binaries / "etcd"),
                "--name=testbed",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=testbed={peer_url}",
                "--listen-metrics-urls=",
                # A test cluster's data is thrown away; fsync only costs time.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        wait_until(lambda: _http_ok(f"{client_url}/health"), what="etcd", timeout=30, process=etcd)
        return client_url

    def _start_apiserver(
        self,
        binaries: Path,
        port: int,
        etcd_url: str,
        *,
        serving: pki.KeyPair,
        sa_keys: tuple[Path, Path],
    ) -> None:
        sa_private, sa_public = sa_keys
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(binaries / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={self.ca}",
                f"--service-account-key-file={sa_public}",
                f"--service-account-signing-key-file={sa_private}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                # Privileged pods must reach Pod Security admission to be refused there.
                "--allow-privileged=true",
                # The `kubernetes` Service cannot point at a loopback address; nothing here
                # needs it to.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ],
        )
        wait_until(self._ready, what="kube-apiserver", timeout=60, process=apiserver)
        self._apiserver_argv = list(apiserver.popen.args)  # type: ignore[arg-type]

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone, as an outage: etcd and the controller manager keep running.

        `start_apiserver` brings it back. Raises ValueError unless exactly one is running.
        """
        (apiserver,) = (p for p in self.processes if p.name == "kube-apiserver")
        # Killed after a second: its graceful shutdown takes over ten, and an outage need
        # not be polite.
        apiserver.stop(timeout=1)
        self.processes.remove(apiserver)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port, flags and certificates as before;
        returns once /readyz answers.

        Raises testbed.process.StartError with its log when it does not get there.
        """
        apiserver = self._spawn("kube-apiserver", self._apiserver_argv)
        wait_until(self._ready, what="kube-apiserver", timeout=60, process=apiserver)

    def _start_controller_manager(self, binaries: Path, kubeconfig: Path, sa_private: Path) -> None:
        kcm = self._spawn(
            "kube-controller-manager",
            [
                str(binaries / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--root-ca-file={self.ca}",
                f"--service-account-private-key-file={sa_private}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        # The controller manager is ready for tests once it has made the `default`
        # ServiceAccount, without which no pod is admitted.
        wait_until(
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default"),
            what="kube-controller-manager",
            timeout=60,
            process=kcm,
        )

    def _spawn(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.directory / f"{name}.log")
        self.processes.append(process)
        return process

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(self.directory / "pki/admin.crt", self.directory / "pki/admin.key")
        return context

    def _get(self, path: str) -> bool:
        with urllib.request.urlopen(  # noqa: S310 - our own https URL
            f"{self.server}{path}", context=self._ssl(), timeout=5
        ) as response:
            return bool(response.status == 200)

    def _ready(self) -> bool:
        return self._get("/readyz")

    def serviceaccount_kubeconfig(
        self, namespace: str, name: str, path: Path, expiration_seconds: int = 3600
    ) -> Path:
        """Write a kubeconfig that acts as ServiceAccount `namespace/name` and nothing more.

        The token comes from the TokenRequest API, so it carries exactly the RBAC that was
        bound to that ServiceAccount (for example by the Helm chart's templates).
        """
        return serviceaccount_kubeconfig(
            self.admin_kubeconfig,
            server=self.server,
            ca=self.ca,
            namespace=namespace,
            name=name,
            path=path,
            expiration_seconds=expiration_seconds,
        )

    def stop(self) -> None:
        """Stop every component, newest first."""
        for process in reversed(self.processes):
            # kube-apiserver takes over 10 s to drain on SIGTERM; a test cluster's state is
            # thrown away, so nothing is lost by killing it sooner.
            process.stop(timeout=2)
        self.processes.clear()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
        return bool(response.status == 200)


def serviceaccount_kubeconfig(
    admin_kubeconfig: Path,
    *,
    server: str,
    ca: Path | None,
    namespace: str,
    name: str,
    path: Path,
    expiration_seconds: int = 3600,
) -> Path:
    """Write a kubeconfig with a fresh TokenRequest token for ServiceAccount `namespace/name`."""
    api = client.CoreV1Api(config.new_client_from_config(str(admin_kubeconfig)))
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
    )
    token = api.create_namespaced_service_account_token(name, namespace, request).status.token
    return write_kubeconfig(
        path, server=server, ca=ca, user=f"{namespace}-{name}", token=token, namespace=namespace
    )


@dataclass
class ExistingCluster:
    """A cluster the tests did not start (DEVSPACE_TEST_KUBECONFIG): same interface, no stop."""

    admin_kubeconfig: Path

    def serviceaccount_kubeconfig(
        self, namespace: str, name: str, path: Path, expiration_seconds: int = 3600
    ) -> Path:
        """See ControlPlane.serviceaccount_kubeconfig."""
        configuration = client.Configuration()
        config.load_kube_config(str(self.admin_kubeconfig), client_configuration=configuration)
        ca = Path(configuration.ssl_ca_cert) if configuration.ssl_ca_cert else None
        return serviceaccount_kubeconfig(
            self.admin_kubeconfig,
            server=configuration.host,
            ca=ca,
            namespace=namespace,
            name=name,
            path=path,
            expiration_seconds=expiration_seconds,
        )

    def stop(self) -> None:
        """Nothing to stop: the cluster belongs to someone else."""
