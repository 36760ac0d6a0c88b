"""A test-node pod's volumes, as host directories (test infrastructure).

emptyDir is a directory of the pod's, removed with it. persistentVolumeClaim is the directory
of the PersistentVolume the claim is bound to (see testbed.storage), which outlives pods.
secret, configMap, downwardAPI and projected volumes are written from the API objects the way
kubelet writes them: files behind a `..data` symlink that is swapped atomically, so they can be
refreshed while containers read them. hostPath is the host path itself. Other types are
reported as not supported (the pod then waits in ContainerCreating, as on a real node whose
kubelet cannot mount a volume).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed.kubeapi import ApiError, KubeClient, Object

# Files are the volume's content: relative path -> (bytes, mode).
Payload = dict[str, tuple[bytes, int]]


class VolumeNotReady(Exception):
    """A volume cannot be set up yet (claim unbound, object missing, type not supported)."""


def prepare(
    api: KubeClient, pod: Object, volume: Object, directory: Path, fs_group: int | None
) -> tuple[Path, bool]:
    """Make `volume` of `pod` ready under `directory`; returns (host path, read-only).

    Safe to call again: secret-like volumes are rewritten only when their content changed.
    Raises VolumeNotReady with a message for the pod's status.
    """
    name = volume["name"]
    namespace = pod["metadata"]["namespace"]
    path = directory / name
    if "emptyDir" in volume:
        if not path.exists():
            path.mkdir(parents=True)
            path.chmod(0o777)  # as kubelet makes them: any container user may write
            _apply_fs_group(path, fs_group, writable=True)
        return path, False
    if "persistentVolumeClaim" in volume:
        source = volume["persistentVolumeClaim"]
        return _claim_path(api, namespace, source["claimName"], fs_group), bool(
            source.get("readOnly")
        )
    if "hostPath" in volume:
        host = Path(volume["hostPath"]["path"])
        kind = volume["hostPath"].get("type", "")
        if kind == "DirectoryOrCreate":
            host.mkdir(parents=True, exist_ok=True)
        elif not host.exists():
            raise VolumeNotReady(f"hostPath {host} does not exist")
        return host, False
    payload = _payload(api, pod, volume)
    if payload is None:
        kinds = sorted(set(volume) - {"name"})
        raise VolumeNotReady(f"volume {name!r}: type {kinds} is not supported by the test node")
    write_atomically(path, payload, fs_group)
    return path, True


def _claim_path(api: KubeClient, namespace: str, claim: str, fs_group: int | None) -> Path:
    try:
        pvc = api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    except ApiError as error:
        if error.status == 404:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" not found') from error
        raise
    if pvc.get("status", {}).get("phase") != "Bound":
        raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is not bound')
    pv = api.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    source = pv["spec"].get("hostPath") or pv["spec"].get("local")
    if not source:
        raise VolumeNotReady(f"persistentvolume {pv['metadata']['name']} is not a local path")
    path = Path(source["path"])
    if not path.is_dir():
        raise VolumeNotReady(f"persistentvolume {pv['metadata']['name']}: {path} is missing")
    _apply_fs_group(path, fs_group, writable=True)
    return path


def _payload(api: KubeClient, pod: Object, volume: Object) -> Payload | None:
    """The files of a secret-like volume, or None for a type this module does not know."""
    namespace = pod["metadata"]["namespace"]
    if "secret" in volume:
        source = volume["secret"]
        data = _object_data(api, namespace, "secrets", source.get("secretName", ""), source)
        return _items(data, source.get("items"), source.get("defaultMode", 0o644))
    if "configMap" in volume:
        source = volume["configMap"]
        data = _object_data(api, namespace, "configmaps", source.get("name", ""), source)
        return _items(data, source.get("items"), source.get("defaultMode", 0o644))
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        return _downward(pod, source.get("items", []), source.get("defaultMode", 0o644))
    if "projected" in volume:
        return _projected(api, pod, volume["projected"])
    return None


def _projected(api: KubeClient, pod: Object, projected: Object) -> Payload:
    namespace = pod["metadata"]["namespace"]
    mode = projected.get("defaultMode", 0o644)
    files: Payload = {}
    for source in projected.get("sources", []):
        if "secret" in source:
            s = source["secret"]
            data = _object_data(api, namespace, "secrets", s.get("name", ""), s)
            files |= _items(data, s.get("items"), mode)
        elif "configMap" in source:
            c = source["configMap"]
            data = _object_data(api, namespace, "configmaps", c.get("name", ""), c)
            files |= _items(data, c.get("items"), mode)
        elif "downwardAPI" in source:
            files |= _downward(pod, source["downwardAPI"].get("items", []), mode)
        elif "serviceAccountToken" in source:
            t = source["serviceAccountToken"]
            files[t["path"]] = (_token(api, pod, t).encode(), mode)
        else:
            raise VolumeNotReady(f"projected source {sorted(source)} is not supported")
    return files


def _token(api: KubeClient, pod: Object, source: Object) -> str:
    """A TokenRequest token bound to the pod, as kubelet asks for one."""
    meta = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [source["audience"]] if source.get("audience") else [],
            "expirationSeconds": source.get("expirationSeconds", 3607),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }
    answer = api.create(
        f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token", request
    )
    return str(answer["status"]["token"])


def _object_data(
    api: KubeClient, namespace: str, resource: str, name: str, source: Mapping[str, Any]
) -> dict[str, bytes]:
    """A Secret's or ConfigMap's keys as bytes; {} for a missing optional one."""
    try:
        obj = api.get(f"/api/v1/namespaces/{namespace}/{resource}/{name}")
    except ApiError as error:
        if error.status == 404:
            if source.get("optional"):
                return {}
            raise VolumeNotReady(f'{resource[:-1]} "{name}" not found') from error
        raise
    if resource == "secrets":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data |= {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
    return data


def _items(data: Mapping[str, bytes], items: list[Object] | None, mode: int) -> Payload:
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    files: Payload = {}
    for item in items:
        if item["key"] not in data:
            raise VolumeNotReady(f"key {item['key']!r} not found")
        files[item["path"]] = (data[item["key"]], item.get("mode", mode))
    return files


def field_value(pod: Object, path: str) -> str:
    """The downward API's value for a fieldRef such as `metadata.name` or `status.podIP`.

    Raises VolumeNotReady for a field the test node does not provide.
    """
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    for prefix, mapping in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(meta.get(mapping, {}).items()))
        if path.startswith(f"{prefix}['"):
            return str(meta.get(mapping, {}).get(path[len(prefix) + 2 : -2], ""))
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path not in values:
        raise VolumeNotReady(f"fieldRef {path!r} is not supported by the test node")
    return str(values[path])


def _downward(pod: Object, items: list[Object], mode: int) -> Payload:
    files: Payload = {}
    for item in items:
        if "fieldRef" not in item:
            raise VolumeNotReady("only fieldRef items are supported in downwardAPI volumes")
        value = field_value(pod, item["fieldRef"]["fieldPath"])
        files[item["path"]] = (value.encode(), item.get("mode", mode))
    return files


def write_atomically(directory: Path, payload: Payload, fs_group: int | None) -> None:
    """Write `payload` as kubelet's atomic writer does; a no-op when nothing changed.

    Files live in a timestamped directory; `..data` points at it and each top-level name is a
    symlink through `..data`, so readers see either the old or the new set, never a mix.
    """
    data_link = directory / "..data"
    digest = hashlib.sha256(repr((sorted(payload.items()), fs_group)).encode()).hexdigest()
    if data_link.exists() and _read(directory / "..digest") == digest:
        return
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    version = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    version.mkdir(mode=0o755)
    for relative, (content, mode) in payload.items():
        target = version / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    _apply_fs_group(version, fs_group, writable=False)
    previous = os.readlink(data_link) if data_link.is_symlink() else None
    staging = directory / "..data_tmp"
    staging.unlink(missing_ok=True)
    staging.symlink_to(version.name)
    staging.rename(data_link)
    tops = {Path(relative).parts[0] for relative in payload}
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in directory.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if previous:
        shutil.rmtree(directory / previous, ignore_errors=True)
    (directory / "..digest").write_text(digest)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _apply_fs_group(path: Path, fs_group: int | None, *, writable: bool) -> None:
    """Give `fs_group` the volume, as kubelet does for a pod's securityContext.fsGroup.

    Read-only volumes get group read; writable ones group read-write and setgid directories,
    so files that containers create there belong to the group too. Like the default
    fsGroupChangePolicy it walks the tree only when the top is not already the group's.
    """
    if fs_group is None or (path.stat().st_gid == fs_group and writable):
        return
    bits = 0o660 if writable else 0o440
    for entry in [path, *path.rglob("*")]:
        if entry.is_symlink():
            continue
        os.chown(entry, -1, fs_group)
        mode = entry.stat().st_mode & 0o7777
        if entry.is_dir():
            entry.chmod(mode | bits | 0o110 | 0o2000)
        else:
            entry.chmod(mode | bits)
