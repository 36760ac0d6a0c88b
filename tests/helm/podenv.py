"""What a container of the rendered chart would see: its environment and its mounted files.

Enough of a kubelet to hand the server's own configuration loader exactly what the chart
gives a container: ConfigMap `envFrom`, `env` (values and secretKeyRef), and secret,
configMap and projected volumes written under a temporary root, with every path in the
environment moved under that root.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

from .chart import Doc

IN_POD_ROOTS = ("/etc/devspace/", "/var/lib/devspace")


class Objects:
    """The Secrets and ConfigMaps a pod can read: the chart's, plus the admin's own."""

    def __init__(self, docs: list[Doc], own_secrets: Mapping[str, Mapping[str, str]]) -> None:
        self._data: dict[tuple[str, str], dict[str, str]] = {}
        for doc in docs:
            if doc["kind"] == "Secret":
                decoded = {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
                self._data["Secret", doc["metadata"]["name"]] = decoded
            elif doc["kind"] == "ConfigMap":
                self._data["ConfigMap", doc["metadata"]["name"]] = dict(doc["data"])
        for name, data in own_secrets.items():
            self._data["Secret", name] = dict(data)

    def get(self, kind: str, name: str) -> dict[str, str]:
        try:
            return self._data[kind, name]
        except KeyError:
            raise AssertionError(f"the pod needs {kind} {name}, which nothing provides") from None


def _items(data: Mapping[str, str], items: list[Doc] | None) -> dict[str, str]:
    if items is None:
        return dict(data)
    for item in items:
        assert item["key"] in data, f"key {item['key']} is missing"
    return {item["path"]: data[item["key"]] for item in items}


def _volume_files(volume: Doc, objects: Objects) -> dict[str, str]:
    if "secret" in volume:
        source = volume["secret"]
        return _items(objects.get("Secret", source["secretName"]), source.get("items"))
    if "configMap" in volume:
        source = volume["configMap"]
        return _items(objects.get("ConfigMap", source["name"]), source.get("items"))
    if "projected" in volume:
        files: dict[str, str] = {}
        for source in volume["projected"]["sources"]:
            kind = "Secret" if "secret" in source else "ConfigMap"
            spec = source["secret" if kind == "Secret" else "configMap"]
            files |= _items(objects.get(kind, spec["name"]), spec.get("items"))
        return files
    return {}  # emptyDir, persistentVolumeClaim: empty directories


def container_environ(pod: Doc, container: Doc, objects: Objects, root: Path) -> dict[str, str]:
    """The container's environment, with its volumes written under `root`."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for path, content in _volume_files(volumes[mount["name"]], objects).items():
            file = target / path
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(content)
            file.chmod(0o600)  # ours, so the server's "readable by us alone" check applies
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environ |= objects.get("ConfigMap", source["configMapRef"]["name"])
    for variable in container.get("env", []):
        if "value" in variable:
            environ[variable["name"]] = str(variable["value"])
        elif "secretKeyRef" in variable["valueFrom"]:
            ref = variable["valueFrom"]["secretKeyRef"]
            environ[variable["name"]] = objects.get("Secret", ref["name"])[ref["key"]]
        else:
            ref = variable["valueFrom"]["configMapKeyRef"]
            environ[variable["name"]] = objects.get("ConfigMap", ref["name"])[ref["key"]]
    return {name: _moved(value, root) for name, value in environ.items()}


def _moved(value: str, root: Path) -> str:
    if value.startswith(IN_POD_ROOTS):
        return str(root / value.lstrip("/"))
    return value


def find_container(pod: Doc, name: str) -> Doc:
    (found,) = [
        c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == name
    ]
    return found
