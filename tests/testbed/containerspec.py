"""What one test-node container runs with: command, environment, identity, mounts.

Test infrastructure. These follow Kubernetes' rules (command/args over the image's
entrypoint/CMD, `$(VAR)` expansion, env over envFrom, container securityContext over the
pod's) so a manifest means here what it means on a real node. A manifest that a kubelet would
refuse raises ConfigError, which the pod's status reports as CreateContainerConfigError.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.images import Image
from testbed.kubeapi import ApiError, KubeClient, Object
from testbed.volumes import VolumeNotReady, field_value

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The container cannot be configured; the message is for the pod's status."""


@dataclass(frozen=True)
class Identity:
    """Who the container's process is, and what it may do."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    no_new_privs: bool
    read_only_root: bool


def identity(pod: Object, container: Object, image: Image) -> Identity:
    """The uid/gid/groups from the pod's and container's securityContext and the image.

    Raises ConfigError when runAsNonRoot is asked for and the process would be root.
    """
    pod_context: Mapping[str, Any] = pod["spec"].get("securityContext") or {}
    context: Mapping[str, Any] = container.get("securityContext") or {}

    def setting(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    uid = setting("runAsUser")
    gid = setting("runAsGroup")
    if uid is None:
        uid = image.user
        gid = image.group if gid is None else gid
    if gid is None:
        gid = image.group if uid == image.user else 0
    if setting("runAsNonRoot") and uid == 0:
        meta = pod["metadata"]
        raise ConfigError(
            "container has runAsNonRoot and image will run as root "
            f'(pod: "{meta["name"]}_{meta["namespace"]}({meta["uid"]})", '
            f"container: {container['name']})"
        )
    groups = [gid, *pod_context.get("supplementalGroups", [])]
    if pod_context.get("fsGroup") is not None:
        groups.append(pod_context["fsGroup"])
    return Identity(
        uid=int(uid),
        gid=int(gid),
        groups=tuple(dict.fromkeys(int(g) for g in groups)),
        no_new_privs=context.get("allowPrivilegeEscalation") is False,
        read_only_root=bool(context.get("readOnlyRootFilesystem")),
    )


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(replace, text)


def command(container: Object, image: Image, env: Mapping[str, str]) -> list[str]:
    """The argv: `command` replaces the entrypoint, `args` the CMD, as in Kubernetes.

    Raises ConfigError when there is nothing to run.
    """
    if "command" in container:
        argv = [*container["command"], *container.get("args", [])]
    else:
        argv = [*image.entrypoint, *container.get("args", image.cmd)]
    if not argv:
        raise ConfigError("no command specified")
    return [expand(arg, env) for arg in argv]


def environment(
    api: KubeClient, pod: Object, container: Object, image: Image, uid: int
) -> dict[str, str]:
    """The process environment: the image's, then envFrom, then env, each expanded.

    `pod` must carry the status fields (podIP, hostIP) that fieldRefs may read.
    Raises ConfigError for a missing Secret, ConfigMap or key that is not optional.
    """
    env = {"HOME": "/root" if uid == 0 else "/", **image.env}
    env["HOSTNAME"] = pod["spec"].get("hostname") or pod["metadata"]["name"]
    namespace = pod["metadata"]["namespace"]
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind, resource in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            if kind in source:
                ref = source[kind]
                data = _data(api, namespace, resource, ref["name"], bool(ref.get("optional")))
                env |= {prefix + key: value for key, value in (data or {}).items()}
    for variable in container.get("env", []):
        value = _value(api, pod, variable, env)
        if value is not None:
            env[variable["name"]] = value
    return env


def _value(api: KubeClient, pod: Object, variable: Object, env: dict[str, str]) -> str | None:
    if "valueFrom" not in variable:
        return expand(variable.get("value", ""), env)
    source = variable["valueFrom"]
    if "fieldRef" in source:
        try:
            return field_value(pod, source["fieldRef"]["fieldPath"])
        except VolumeNotReady as error:
            raise ConfigError(str(error)) from error
    namespace = pod["metadata"]["namespace"]
    for kind, resource in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
        if kind in source:
            ref = source[kind]
            optional = bool(ref.get("optional"))
            data = _data(api, namespace, resource, ref["name"], optional)
            if data is None:
                return None
            if ref["key"] not in data:
                if optional:
                    return None
                raise ConfigError(f"couldn't find key {ref['key']} in {kind[:-6]} {ref['name']}")
            return data[ref["key"]]
    raise ConfigError(f"env {variable['name']}: {sorted(source)} is not supported by the test node")


def _data(
    api: KubeClient, namespace: str, resource: str, name: str, optional: bool
) -> dict[str, str] | None:
    """A ConfigMap's or Secret's data as text; None when it is missing and optional."""
    try:
        obj = api.get(f"/api/v1/namespaces/{namespace}/{resource}/{name}")
    except ApiError as error:
        if error.status == 404:
            if optional:
                return None
            raise ConfigError(f'{resource[:-1]} "{name}" not found') from error
        raise
    data: dict[str, str] = obj.get("data") or {}
    if resource == "secrets":
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
    return dict(data)


def mounts(
    container: Object,
    volumes: Mapping[str, tuple[Path, bool]],
    image: Image,
    env: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Bind mounts for the launcher: the image's files, then volumes, shallowest first.

    `volumes` maps volume name to (host path, read-only). Raises ConfigError for a mount of
    an unknown volume or a subPath that leaves the volume.
    """
    result = [
        {"source": str(source), "target": target, "readOnly": True}
        for target, source in image.files.items()
    ]
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            raise ConfigError(f"volume {mount['name']!r} is not defined in the pod")
        source, read_only = volumes[mount["name"]]
        sub_path = mount.get("subPath") or expand(mount.get("subPathExpr", ""), env)
        if sub_path:
            if sub_path.startswith("/") or ".." in Path(sub_path).parts:
                raise ConfigError(f"subPath {sub_path!r} must be a relative path inside the volume")
            source = source / sub_path
            if not source.exists():
                source.mkdir(parents=True)
        result.append(
            {
                "source": str(source),
                "target": mount["mountPath"],
                "readOnly": read_only or bool(mount.get("readOnly")),
            }
        )
    # Parents before children, so a mount inside another volume lands on top of it.
    return sorted(result, key=lambda m: len(Path(m["target"]).parts))
