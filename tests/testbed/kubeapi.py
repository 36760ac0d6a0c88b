"""A small JSON client for the Kubernetes API, used by the test node (test infrastructure).

The node agent works on raw objects (dicts keyed as the API spells them) and needs watches,
merge patches and subresources such as `pods/binding`; the official client's generated models
get in the way of all three (it even mis-deserializes a Binding response), so this speaks
HTTP directly. One connection per thread, because http.client connections are not shared.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"


def now() -> str:
    """The current time as the API writes timestamps (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """The current time as the API writes MicroTime fields (a Lease's renewTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiError(Exception):
    """The API server answered with an error status; `status` is the HTTP code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message[:500]}")
        self.status = status
        self.reason = reason


class KubeClient:
    """Talks to one cluster as the identity in a kubeconfig (client certificate or token)."""

    def __init__(self, kubeconfig: Path, scratch: Path) -> None:
        """Read `kubeconfig`; embedded credentials are written under `scratch` (mode 0600).

        Raises ValueError when the kubeconfig has no usable current context.
        """
        config = yaml.safe_load(kubeconfig.read_text())
        context = _named(config.get("contexts", []), config.get("current-context"))["context"]
        cluster = _named(config["clusters"], context["cluster"])["cluster"]
        user = _named(config.get("users", []), context.get("user"), required=False).get("user", {})
        url = urllib.parse.urlsplit(cluster["server"])
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.base = url.path.rstrip("/")
        self.token: str | None = user.get("token")
        if user.get("tokenFile"):
            self.token = Path(user["tokenFile"]).read_text().strip()
        self.tls: ssl.SSLContext | None = None
        if url.scheme == "https":
            scratch.mkdir(parents=True, exist_ok=True)
            ca = _file(cluster, "certificate-authority", scratch / "ca.crt")
            self.tls = ssl.create_default_context(cafile=str(ca) if ca else None)
            if cluster.get("insecure-skip-tls-verify"):
                self.tls.check_hostname = False
                self.tls.verify_mode = ssl.CERT_NONE
            cert = _file(user, "client-certificate", scratch / "client.crt")
            key = _file(user, "client-key", scratch / "client.key")
            if cert and key:
                self.tls.load_cert_chain(str(cert), str(key))
        self._local = threading.local()

    def _connection(self, timeout: float) -> HTTPConnection:
        if self.tls is not None:
            return HTTPSConnection(self.host, self.port, timeout=timeout, context=self.tls)
        return HTTPConnection(self.host, self.port, timeout=timeout)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "devspace-testbed-node"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Object:
        """Send one request and return the decoded answer.

        Raises ApiError for an error status, OSError/HTTPException when the server is gone.
        """
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        # A kept-alive connection may have been closed by the server meanwhile: retry once
        # on a fresh one. Every request the agent makes is safe to repeat.
        for attempt in (1, 2):
            connection: HTTPConnection | None = getattr(self._local, "connection", None)
            if connection is None:
                connection = self._local.connection = self._connection(timeout=30)
            try:
                connection.request(
                    method, url, body=data, headers=self._headers(content_type if data else None)
                )
                response = connection.getresponse()
                payload = response.read()
                break
            except (OSError, HTTPException):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        if response.status >= 400:
            raise _error(response.status, response.reason, payload)
        return json.loads(payload) if payload else {}

    def get(self, path: str, **query: str) -> Object:
        """GET `path`; see request()."""
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: Mapping[str, Any]) -> Object:
        """POST `body` to the collection at `path`; see request()."""
        return self.request("POST", path, body)

    def patch(self, path: str, body: Mapping[str, Any]) -> Object:
        """Apply a JSON merge patch to `path`; see request()."""
        return self.request("PATCH", path, body, content_type=MERGE_PATCH)

    def delete(self, path: str, body: Mapping[str, Any] | None = None) -> Object:
        """DELETE `path`, with optional DeleteOptions; see request()."""
        return self.request("DELETE", path, body)

    def watch(self, path: str, resource_version: str, timeout: int = 300) -> Iterator[Object]:
        """Yield watch events ({type, object}) on `path` from `resource_version`.

        Ends when the server closes the watch; raises ApiError for an ERROR event (410 Gone
        means: list again), OSError/HTTPException when the connection breaks.
        """
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        connection = self._connection(timeout=timeout + 30)
        try:
            connection.request(
                "GET",
                f"{self.base}{path}?{urllib.parse.urlencode(query)}",
                headers=self._headers(None),
            )
            response = connection.getresponse()
            if response.status >= 400:
                raise _error(response.status, response.reason, response.read())
            while line := response.readline():
                event: Object = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    raise ApiError(
                        int(status.get("code", 500)),
                        status.get("reason", ""),
                        status.get("message", ""),
                    )
                yield event
        finally:
            connection.close()


def _named(items: list[Object], name: str | None, *, required: bool = True) -> Object:
    for item in items or []:
        if item.get("name") == name:
            return item
    if required:
        raise ValueError(f"kubeconfig has no entry named {name!r}")
    return {}


def _file(section: Mapping[str, Any], key: str, scratch: Path) -> Path | None:
    """The path of a credential given either as `key` (a file) or `key-data` (base64)."""
    if section.get(key):
        return Path(section[key])
    if section.get(f"{key}-data"):
        scratch.write_bytes(base64.b64decode(section[f"{key}-data"]))
        os.chmod(scratch, 0o600)
        return scratch
    return None


def _error(status: int, reason: str, payload: bytes) -> ApiError:
    try:
        message = json.loads(payload).get("message", "")
    except ValueError:
        message = payload.decode(errors="replace")
    return ApiError(status, reason, message)
