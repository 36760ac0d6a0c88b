"""The reconciler's errors: Kubernetes failures converted at the edge into our own types.

Every kubernetes or urllib3 exception that leaves `cluster.py` does so as a `ClusterError`,
raised `from` the original, with the API server's message extracted and long bodies cut so a
rejected manifest never floods a log line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from devspace_server.errors import DevspaceError

MAX_DETAIL = 300


class ClusterError(DevspaceError):
    """The Kubernetes API refused or failed a request; `str()` is its message, cut short."""

    status = 502
    slug = "cluster-error"
    title = "Kubernetes API error"

    def __init__(self, detail: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.reason = reason


class ClusterUnavailable(ClusterError):
    """The API server could not be reached or answered 5xx/429; retry later."""

    status = 503
    slug = "cluster-unavailable"
    title = "Kubernetes API unavailable"


class ClusterForbidden(ClusterError):
    """The reconciler's identity lacks a permission (its RBAC is incomplete)."""

    slug = "cluster-forbidden"
    title = "Kubernetes API forbade the request"


class ClusterNotFound(ClusterError):
    """The object does not exist."""

    slug = "cluster-not-found"
    title = "Kubernetes object not found"


class ClusterConflict(ClusterError):
    """A write lost a race (resourceVersion) or the object already exists."""

    slug = "cluster-conflict"
    title = "Kubernetes write conflict"


class ClusterInvalid(ClusterError):
    """The API server refused the object (validation or admission, e.g. Pod Security)."""

    slug = "cluster-invalid"
    title = "Kubernetes refused the object"


class NotOurs(ClusterError):
    """An object with a managed name exists but does not carry our ownership labels.

    The reconciler never adopts it: someone else made it, and taking it over could hand a
    stranger's namespace to a tenant.
    """

    slug = "cluster-not-ours"
    title = "Object not managed by devspace"


class HostKeyUnreadable(ClusterError):
    """A space's sidecar host key, sealed in the database, cannot be opened with the keys the
    reconciler has (a rotation that dropped a key too soon, or a damaged row).

    Not the cluster's doing, but handled as a cluster refusal is, on purpose: the space shows
    `error` with this message and is retried with backoff, and every other space goes on.
    """

    slug = "host-key-unreadable"
    title = "Host key cannot be decrypted"


def cut(text: str, limit: int = MAX_DETAIL) -> str:
    """`text` on one line, at most `limit` characters, marked when cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[: limit - 1]}…"


def _message(error: ApiException) -> str:
    body = error.body or ""
    try:
        status = json.loads(body)
    except ValueError:
        return cut(body or str(error.reason or "no message"))
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return cut(status["message"])
    return cut(body)


def convert(error: ApiException) -> ClusterError:
    """The ClusterError for an ApiException (not yet raised; the caller raises it `from`)."""
    code = int(error.status or 0)
    message = _message(error)
    kinds: dict[int, type[ClusterError]] = {
        401: ClusterForbidden,
        403: ClusterForbidden,
        404: ClusterNotFound,
        409: ClusterConflict,
        410: ClusterConflict,
        422: ClusterInvalid,
        400: ClusterInvalid,
    }
    kind = kinds.get(code, ClusterUnavailable if code >= 500 or code in (0, 429) else ClusterError)
    return kind(message, code=code, reason=str(error.reason or ""))


@contextmanager
def kube_errors(action: str) -> Iterator[None]:
    """Run a Kubernetes call; re-raise its failures as ClusterError, prefixed with `action`."""
    try:
        yield
    except ApiException as error:
        converted = convert(error)
        converted.detail = f"{action}: {converted.detail}"
        converted.args = (converted.detail,)
        raise converted from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise ClusterUnavailable(f"{action}: {cut(str(error))}") from error
