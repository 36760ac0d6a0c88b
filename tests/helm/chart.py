"""The chart under test, the helm client that renders and installs it, and the value sets.

`Helm` runs the binary that `tests/testbed/build-helm` built, with its own config, cache and
data directories (never the user's `~/.config/helm`).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm/devspace"
BUILD_HELM = ROOT / "tests/testbed/build-helm"
PUBLIC_URL = "https://devspace.example.com"

Doc = dict[str, Any]


class HelmFailed(Exception):
    """helm exited non-zero; `str()` is its stderr."""


def build_helm() -> Path:
    """Build helm (or find it in the test bed's cache); returns the binary's path."""
    result = subprocess.run(
        [str(BUILD_HELM)], check=True, stdout=subprocess.PIPE, text=True, timeout=1800
    )
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path
    """Holds helm's config, cache and data directories."""

    def __call__(self, *args: str, timeout: float = 120) -> str:
        """Run helm; returns stdout, raises `HelmFailed` with stderr."""
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        done = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise HelmFailed(done.stderr.strip())
        return done.stdout

    def values_file(self, values: Mapping[str, Any]) -> Path:
        """`values` as a YAML file helm can read with --values."""
        text = yaml.safe_dump(dict(values))
        path = self.home / f"values-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
        path.write_text(text)
        return path

    def template(
        self,
        values: Mapping[str, Any],
        *,
        namespace: str = "devspace",
        release: str = "rel",
        only: Sequence[str] = (),
    ) -> list[Doc]:
        """The chart rendered with `values`, as a list of objects (hooks included); with
        `only`, just those templates (paths such as `templates/rbac.yaml`)."""
        shown = [arg for path in only for arg in ("--show-only", path)]
        out = self(
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--values",
            str(self.values_file(values)),
            *shown,
        )
        return [d for d in yaml.safe_load_all(out) if d]


def merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of value dicts, later layers winning (as helm merges --values files)."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
                result[key] = merged(result[key], value)
            else:
                result[key] = value
    return result


BASE: dict[str, Any] = {"publicUrl": PUBLIC_URL}
POSTGRES: dict[str, Any] = {
    "database": {"type": "postgresql", "postgresql": {"existingSecret": "devspace-db"}},
    "api": {"replicas": 3},
    "reconciler": {"replicas": 2},
}
NODEPORT: dict[str, Any] = {"gateway": {"service": {"type": "NodePort", "nodePort": 30022}}}
INGRESS: dict[str, Any] = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "host": "devspace.example.com",
        "tlsSecretName": "devspace-tls",
    },
    "metrics": {"serviceMonitor": {"enabled": True}},
    "gateway": {"publicAddress": "ssh.devspace.example.com:2222"},
    "upstream": [
        {
            "name": "corp",
            "title": "Corp SSO",
            "discoveryUrl": "https://sso.example.com/.well-known/openid-configuration",
            "clientId": "devspace",
            "clientSecret": {"existingSecret": "corp-sso", "key": "client-secret"},
            "allowedDomains": ["example.com"],
            "adminGroup": "devspace-admins",
        },
        {
            "name": "github",
            "type": "github",
            "clientId": "Iv1.0123",
            "clientSecret": {"existingSecret": "github-oauth", "key": "secret"},
            "allowedGroups": ["example-org"],
        },
    ],
    "spaces": {"quotaDefaults": {"spaces": 5, "requests.cpu": "4", "limits.memory": "16Gi"}},
}


def byo_secrets(ca_public: str, host_public: str) -> dict[str, Any]:
    """Values naming Secrets the admin made, with the public halves the chart must publish."""
    return {
        "server": {"existingSecret": "my-server"},
        "sshCA": {"publicKey": ca_public},
        "gateway": {
            "existingAuthSecret": "my-gateway-auth",
            "hostKey": {"existingSecret": "my-host-key", "publicKey": host_public},
        },
        "metrics": {"existingSecret": "my-metrics"},
        "hostKeyEncryption": {"existingSecret": "my-host-key-encryption"},
    }


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, suffix: str) -> Doc:
    """The one object of `kind` whose name ends with `suffix`."""
    (found,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    return found


def pod_templates(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(workload name, pod spec) of every Deployment and Job."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def containers(pod: Doc) -> list[Doc]:
    return [*pod.get("initContainers", []), *pod["containers"]]
