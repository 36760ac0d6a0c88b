"""Prometheus metrics: what the server and the reconciler count, and their exposition.

| metric | labels | counted where |
|---|---|---|
| `devspace_http_requests_total` | method, route, status | every request (`telemetry.py`) |
| `devspace_http_request_duration_seconds` | method, route | every request |
| `devspace_logins_total` | method (`local` or the provider's name), result | the audit log |
| `devspace_ssh_certificates_issued_total` | key_type | the audit log |
| `devspace_reconcile_duration_seconds` | result (`ok`, `cluster-error`, `error`) | each pass |
| `devspace_reconcile_errors_total` | kind (`cluster`, `unexpected`) | each failed pass |
| `devspace_spaces` | phase | read from the database at scrape time |
| `devspace_database_up` | | 1 if that read worked |

`route` is the Flask rule (`/api/v1/spaces/<name>`), never the raw path, so the number of
series stays bounded whatever clients send.

Several processes: gunicorn runs several workers, and a scrape reaches one of them. With
`PROMETHEUS_MULTIPROC_DIR` set, prometheus_client's multiprocess mode has every process
write its samples to files there and the exposition adds up all of them. prometheus_client
decides which mode it is in once, when it is first imported, so nothing in this package
imports it at module level: the instruments are made on first use, in a worker after the
fork, by which time `serve` has set the directory (`tests/server/test_metrics.py` keeps it
so). Without the variable each process counts alone, which is right for one process.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOGIN_RESULTS = {
    "login.succeeded": "succeeded",
    "login.failed": "failed",
    "login.throttled": "throttled",
}
CERTIFICATE_ISSUED = "ssh.certificate_issued"
UNMATCHED_ROUTE = "<unmatched>"
_R = TypeVar("_R")


@dataclass(frozen=True)
class Instruments:
    """The process's metrics. In multiprocess mode their values live in files."""

    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    logins: Counter
    certificates: Counter
    reconcile_seconds: Histogram
    reconcile_errors: Counter


@functools.cache
def instruments() -> Instruments:
    """This process's instruments, made on first use (see the module docstring for why)."""
    from prometheus_client import (  # noqa: PLC0415 - must not be imported before the fork
        CollectorRegistry,
        Counter,
        Histogram,
    )

    registry = CollectorRegistry(auto_describe=True)
    return Instruments(
        registry=registry,
        requests=Counter(
            "devspace_http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=registry,
        ),
        request_seconds=Histogram(
            "devspace_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route.",
            ["method", "route"],
            registry=registry,
        ),
        logins=Counter(
            "devspace_logins",
            "Sign-ins on the web pages, by method (local or the upstream provider) and result.",
            ["method", "result"],
            registry=registry,
        ),
        certificates=Counter(
            "devspace_ssh_certificates_issued",
            "SSH user certificates issued, by the certified key's type.",
            ["key_type"],
            registry=registry,
        ),
        reconcile_seconds=Histogram(
            "devspace_reconcile_duration_seconds",
            "Time of one reconcile pass of one space, by result.",
            ["result"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        ),
        reconcile_errors=Counter(
            "devspace_reconcile_errors",
            "Reconcile passes that failed: `cluster` (retried with back-off) or `unexpected`.",
            ["kind"],
            registry=registry,
        ),
    )


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """Count one answered request; `route` is the matched rule, None if none matched."""
    found = instruments()
    label = route or UNMATCHED_ROUTE
    found.requests.labels(method, label, str(status)).inc()
    found.request_seconds.labels(method, label).observe(seconds)


def audited(action: str, details: Mapping[str, Any]) -> None:
    """Count an audited event that has a metric: a sign-in, or an issued certificate.

    Called by `audit.record`, so a metric can never disagree with the audit log about
    what happened. Upstream sign-ins name their provider (only configured providers reach
    the audit log, so the label's values are bounded); local ones do not.
    """
    if action in LOGIN_RESULTS:
        provider = details.get("provider")
        method = str(provider) if provider else "local"
        instruments().logins.labels(method, LOGIN_RESULTS[action]).inc()
    elif action == CERTIFICATE_ISSUED:
        instruments().certificates.labels(str(details.get("key_type", "unknown"))).inc()


def timed_reconcile(reconcile: Callable[[str], _R], key: str, cluster_error: type[Exception]) -> _R:
    """`reconcile(key)`, timed and its failure counted; exceptions pass through unchanged.

    `cluster_error` is the exception type of an expected cluster failure (retried); any
    other exception is counted as `unexpected`.
    """
    found, started = instruments(), time.monotonic()
    try:
        outcome = reconcile(key)
    except Exception as exc:
        expected = isinstance(exc, cluster_error)
        found.reconcile_seconds.labels("cluster-error" if expected else "error").observe(
            time.monotonic() - started
        )
        found.reconcile_errors.labels("cluster" if expected else "unexpected").inc()
        raise
    found.reconcile_seconds.labels("ok").observe(time.monotonic() - started)
    return outcome


class SpacesByPhase:
    """A collector that reads how many live spaces are in each phase when scraped.

    `count()` returns {phase: count}; if it raises, the scrape still answers, without the
    `devspace_spaces` family and with `devspace_database_up` 0: metrics matter most when
    the database is in trouble.
    """

    def __init__(self, count: Callable[[], Mapping[str, int]]) -> None:
        self._count = count

    def collect(self) -> Iterator[Metric]:
        """The `devspace_spaces` and `devspace_database_up` families."""
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415 - see instruments()

        up = GaugeMetricFamily(
            "devspace_database_up", "1 if the last scrape could read the database, else 0."
        )
        try:
            counts = self._count()
        except Exception:  # any failure of the read means "down", said below
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        spaces = GaugeMetricFamily(
            "devspace_spaces", "Spaces that are not deleted, by phase.", labels=["phase"]
        )
        for phase, count in sorted(counts.items()):
            spaces.add_metric([phase], count)
        yield spaces
        yield up


class _Exposition:
    """Every collector of one scrape behind one `collect()`, as `generate_latest` wants."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def exposition(extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """(body, content type) of a scrape: this process's metrics, or every process's in
    multiprocess mode, followed by `extra` collectors."""
    from prometheus_client import (  # noqa: PLC0415 - see instruments()
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
    )
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    own: Collector
    if multiprocess_dir():
        own = CollectorRegistry()
        MultiProcessCollector(own)  # type: ignore[no-untyped-call]
    else:
        own = instruments().registry
    body = generate_latest(_Exposition([own, *extra]))
    return body, CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    """The multiprocess directory from the environment, or None in single-process mode."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: Path) -> None:
    """Make `path` the (empty) multiprocess directory of this process and its children.

    Call before prometheus_client is imported (before gunicorn forks its workers). Files
    from an earlier run are removed: their counts belong to processes that are gone, and
    Prometheus expects counters to restart from zero with the server.
    Raises `RuntimeError` if prometheus_client was already imported in single-process mode.
    """
    import sys  # noqa: PLC0415

    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROC_ENV) != str(path):
        raise RuntimeError("prometheus_client was imported before the multiprocess dir was set")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)


def mark_process_dead(pid: int) -> None:
    """Tell multiprocess mode that worker `pid` is gone (gunicorn's `child_exit` hook)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess  # noqa: PLC0415 - see instruments()

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
