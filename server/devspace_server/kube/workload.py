"""The space's Deployment: the dev container and the SSH sidecar in one pod.

The two containers share /workspace (the claim), the network namespace (a pod always does)
and the process namespace (`shareProcessNamespace`), so a shell in the sidecar sees and signals
the dev container's processes. Every container runs as uid 1000 and satisfies Pod Security
`restricted`; no service-account token is mounted, since a dev pod has no business with the
Kubernetes API.
"""

from __future__ import annotations

from kubernetes import client

from devspace_server.kube.meta import COMPONENT, SPACE_ID, object_meta, ownership_labels
from devspace_server.kube.secrets import SECRETS_DIGEST, secrets_digest
from devspace_server.kube.spec import (
    CA_SECRET,
    HOST_KEY_SECRET,
    PRINCIPALS_SECRET,
    SIDECAR_PORT,
    SPACE_UID,
    WORKLOAD_NAME,
    WORKSPACE_CLAIM,
    ClusterSettings,
    Resources,
    SpaceSpec,
)

DEV_CONTAINER = "dev"
SIDECAR_CONTAINER = "sshd"
WORKSPACE_PATH = "/workspace"


def make_resource_requirements(resources: Resources) -> client.V1ResourceRequirements:
    """Requests and limits with the unset ones left out (the LimitRange fills them in)."""
    requests = {"cpu": resources.cpu_request, "memory": resources.memory_request}
    limits = {"cpu": resources.cpu_limit, "memory": resources.memory_limit}
    return client.V1ResourceRequirements(
        requests={k: v for k, v in requests.items() if v is not None} or None,
        limits={k: v for k, v in limits.items() if v is not None} or None,
    )


def make_container_security_context() -> client.V1SecurityContext:
    """What Pod Security `restricted` asks of every container, and nothing looser."""
    return client.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        run_as_non_root=True,
        run_as_user=SPACE_UID,
        run_as_group=SPACE_UID,
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )


def _secret_volume(name: str, secret: str, mode: int) -> client.V1Volume:
    return client.V1Volume(
        name=name,
        secret=client.V1SecretVolumeSource(secret_name=secret, default_mode=mode),
    )


def make_pod_spec(spec: SpaceSpec, settings: ClusterSettings) -> client.V1PodSpec:
    """The dev pod: dev container + sidecar, restricted, no API token, shared PIDs."""
    workspace = client.V1VolumeMount(name="workspace", mount_path=WORKSPACE_PATH)
    dev = client.V1Container(
        name=DEV_CONTAINER,
        image=spec.image,
        command=list(spec.command) or None,
        args=list(spec.args) or None,
        env=[client.V1EnvVar(name=name, value=value) for name, value in spec.env] or None,
        working_dir=WORKSPACE_PATH,
        ports=[
            client.V1ContainerPort(name=port.name, container_port=port.port, protocol="TCP")
            for port in spec.ports
        ]
        or None,
        resources=make_resource_requirements(spec.resources),
        security_context=make_container_security_context(),
        volume_mounts=[workspace],
    )
    sidecar = client.V1Container(
        name=SIDECAR_CONTAINER,
        image=settings.sidecar_image,
        command=list(settings.sidecar_command) or None,
        args=list(settings.sidecar_args) or None,
        ports=[client.V1ContainerPort(name="ssh", container_port=SIDECAR_PORT, protocol="TCP")],
        readiness_probe=client.V1Probe(
            tcp_socket=client.V1TCPSocketAction(port=SIDECAR_PORT),
            period_seconds=2,
        ),
        resources=make_resource_requirements(settings.sidecar_resources),
        security_context=make_container_security_context(),
        volume_mounts=[
            workspace,
            client.V1VolumeMount(
                name="host-key", mount_path="/etc/devspace/host-key", read_only=True
            ),
            client.V1VolumeMount(name="ca", mount_path="/etc/devspace/ca", read_only=True),
            client.V1VolumeMount(
                name="principals", mount_path="/etc/devspace/principals", read_only=True
            ),
        ],
    )
    return client.V1PodSpec(
        containers=[dev, sidecar],
        share_process_namespace=True,
        automount_service_account_token=False,
        enable_service_links=False,
        termination_grace_period_seconds=settings.termination_grace_seconds,
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=SPACE_UID,
            run_as_group=SPACE_UID,
            fs_group=SPACE_UID,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
        volumes=[
            client.V1Volume(
                name="workspace",
                persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                    claim_name=WORKSPACE_CLAIM
                ),
            ),
            # Group-readable through fsGroup; the entrypoint copies the key to a 0600 file,
            # since sshd refuses a host key others can read.
            _secret_volume("host-key", HOST_KEY_SECRET, 0o440),
            _secret_volume("ca", CA_SECRET, 0o444),
            _secret_volume("principals", PRINCIPALS_SECRET, 0o444),
        ],
    )


def make_deployment(spec: SpaceSpec, settings: ClusterSettings) -> client.V1Deployment:
    """One replica, or none while the space is stopped (the claim keeps /workspace)."""
    labels = {**ownership_labels(spec, settings), COMPONENT: "dev"}
    metadata = object_meta(WORKLOAD_NAME, spec, settings)
    metadata.annotations = {SECRETS_DIGEST: secrets_digest(spec)}
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=metadata,
        spec=client.V1DeploymentSpec(
            replicas=0 if spec.stopped else 1,
            # Recreate: the claim is ReadWriteOnce, and two dev pods would fight over it.
            strategy=client.V1DeploymentStrategy(type="Recreate"),
            selector=client.V1LabelSelector(match_labels={SPACE_ID: spec.space_id}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=make_pod_spec(spec, settings),
            ),
        ),
    )
