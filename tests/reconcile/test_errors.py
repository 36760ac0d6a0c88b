"""Kubernetes failures become our own errors at the edge, raised from the original."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devspace_server.errors import DevspaceError
from devspace_server.kube.spec import ClusterSettings, SpaceSpec
from devspace_server.reconcile.cluster import Cluster
from devspace_server.reconcile.errors import (
    MAX_DETAIL,
    ClusterConflict,
    ClusterError,
    ClusterForbidden,
    ClusterInvalid,
    ClusterUnavailable,
    kube_errors,
)
from devspace_server.reconcile.status import Phase
from devspace_server.reconcile.step import Reconciler
from devspace_server.reconcile.store import MemorySpaceStore


def api_error(status: int, message: str) -> ApiException:
    body = json.dumps({"kind": "Status", "message": message, "code": status})
    return ApiException(status=status, reason="Reason", body=body)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (403, ClusterForbidden),
        (409, ClusterConflict),
        (422, ClusterInvalid),
        (500, ClusterUnavailable),
        (503, ClusterUnavailable),
        (429, ClusterUnavailable),
    ],
)
def test_api_errors_are_converted_and_chained(status: int, kind: type[ClusterError]) -> None:
    original = api_error(status, "x" * 10_000)
    with pytest.raises(kind) as caught, kube_errors("applying Secret ns/name"):
        raise original
    error = caught.value
    assert isinstance(error, DevspaceError)
    assert error.__cause__ is original
    assert error.code == status
    assert str(error).startswith("applying Secret ns/name: xxx")
    assert len(str(error)) <= len("applying Secret ns/name: ") + MAX_DETAIL
    assert str(error).endswith("…")


def test_a_body_that_is_not_a_status_is_cut_too() -> None:
    with pytest.raises(ClusterError) as caught, kube_errors("reading"):
        raise ApiException(status=418, reason="Teapot", body="<html>\n" + "y" * 5000)
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < MAX_DETAIL + 20


def test_an_unreachable_api_server_is_unavailable_and_keeps_the_last_status() -> None:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:1"
    configuration.retries = 0
    api = client.ApiClient(configuration)
    store = MemorySpaceStore()
    spec = SpaceSpec("abc", "u1", "n", "img", "key", ("ca",), ("u1",))
    store.put(spec)
    reconciler = Reconciler(Cluster(api), store, ClusterSettings())
    with pytest.raises(ClusterUnavailable) as caught:
        reconciler.reconcile("abc")
    assert caught.value.__cause__ is not None
    assert "abc" not in store.statuses  # a transient failure does not flap the status
    store.delete("abc")
    with pytest.raises(ClusterUnavailable):
        reconciler.reconcile("abc")
    assert "abc" in store.deleted_spaces()  # not finalized while the cluster is unknown
    api.close()
    assert Phase.DELETED not in {s.phase for s in store.statuses.values()}
