"""Prometheus metrics: counted where things happen, read by a token holder only, added up
across gunicorn workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from devspace_server import ca, metrics
from devspace_server.auth import passwords
from devspace_server.config import load_config
from devspace_server.context import state
from devspace_server.errors import ConfigError
from devspace_server.models import Space, User
from devspace_server.reconcile.errors import ClusterError
from testbed.process import Process, free_port, wait_until

from .browser import sign_in
from .conftest import HOST_KEY_ENCRYPTION_KEY, IDP_PASSWORD, NAME, PASSWORD, SECRET, TITLE, Serve
from .oauth_flows import bearer, make_token
from .spaces.helpers import new_space
from .test_ssh_certificates import openssh_public, write_private
from .upstream_pages import LiveServer
from .upstream_pages import sign_in as upstream_sign_in

METRICS_TOKEN = "metrics-token-0123456789-abcdefghijklmnop"  # noqa: S105 - a test token
SERVER = Path(sys.executable).with_name("devspace-server")


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about the counts, not the hash."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def settings(settings: dict[str, str], tmp_path: Path) -> dict[str, str]:
    key = write_private(tmp_path / "ca_key", ca.new_private_key_file_content())
    return settings | {
        "DEVSPACE_METRICS_TOKEN": METRICS_TOKEN,
        "DEVSPACE_SSH_CA_KEY_FILE": str(key),
    }


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_are_closed_without_a_configured_token(
    config_without_token: Callable[[], FlaskClient],
) -> None:
    response = config_without_token().get("/metrics")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert "DEVSPACE_METRICS_TOKEN" in response.get_json()["detail"]


@pytest.fixture
def config_without_token(
    settings: dict[str, str], make_app: Callable[..., Flask]
) -> Callable[[], FlaskClient]:
    def make() -> FlaskClient:
        env = {k: v for k, v in settings.items() if k != "DEVSPACE_METRICS_TOKEN"}
        return make_app(load_config(env)).test_client()

    return make


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {METRICS_TOKEN}"])
def test_metrics_need_the_token(client: FlaskClient, header: str | None) -> None:
    response = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "devspace_http_requests_total" not in response.get_data(as_text=True)


def test_requests_are_counted_by_route_never_by_raw_path(client: FlaskClient) -> None:
    before = scrape(client)
    for name in ("first-secret-name", "second-secret-name"):
        assert client.get(f"/api/v1/spaces/{name}").status_code == 401
    assert client.get("/no/such/path?token=abc").status_code == 404
    text = client.get("/metrics", headers=bearer(METRICS_TOKEN)).get_data(as_text=True)
    after = parse(text)

    route = {"method": "GET", "route": "/api/v1/spaces/<name>"}
    counted = value(after, "devspace_http_requests_total", **route, status="401")
    assert counted - value(before, "devspace_http_requests_total", **route, status="401") == 2
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert (
        value(after, "devspace_http_requests_total", **unmatched)
        - value(before, "devspace_http_requests_total", **unmatched)
        == 1
    )
    latency = value(after, "devspace_http_request_duration_seconds_count", **route) - value(
        before, "devspace_http_request_duration_seconds_count", **route
    )
    assert latency == 2
    assert "secret-name" not in text
    assert "/no/such/path" not in text


def test_spaces_are_counted_by_phase_when_scraped(
    app: Flask, client: FlaskClient, make_user: Callable[..., User]
) -> None:
    assert value(scrape(client), "devspace_database_up") == 1
    assert not [k for k in scrape(client) if k[0] == "devspace_spaces"]
    token = make_token(app, make_user("alice"), "spaces")
    for name in ("one", "two", "three"):
        created = client.post("/api/v1/spaces", json=new_space(name), headers=bearer(token))
        assert created.status_code == 201, created.get_json()
    with app.app_context(), state().sessions() as session:
        session.execute(update(Space).where(Space.name == "one").values(phase="running"))
        session.commit()
    samples = scrape(client)
    assert value(samples, "devspace_spaces", phase="provisioning") == 2
    assert value(samples, "devspace_spaces", phase="running") == 1

    assert client.delete("/api/v1/spaces/two", headers=bearer(token)).status_code in (200, 202, 204)
    with app.app_context(), state().sessions() as session:
        session.execute(
            update(Space).where(Space.name == "two").values(deleted_at=Space.created_at)
        )
        session.commit()
    assert value(scrape(client), "devspace_spaces", phase="provisioning") == 1


def test_a_database_outage_leaves_the_other_metrics_readable(
    settings: dict[str, str], make_app: Callable[..., Flask], unreachable_sqlite_url: str
) -> None:
    client = make_app(
        load_config(settings | {"DEVSPACE_DATABASE_URL": unreachable_sqlite_url})
    ).test_client()
    samples = scrape(client)
    assert value(samples, "devspace_database_up") == 0
    assert any(k[0] == "devspace_http_requests_total" for k in samples)


def test_sign_ins_are_counted_by_method_and_result(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    before = scrape(client)
    assert sign_in(client, "alice", "wrong password").status_code == 401
    assert sign_in(client, "nobody", PASSWORD).status_code == 401
    assert sign_in(client, "alice", PASSWORD).status_code == 303
    after = scrape(client)

    def delta(result: str) -> float:
        labels = {"method": "local", "result": result}
        return value(after, "devspace_logins_total", **labels) - value(
            before, "devspace_logins_total", **labels
        )

    assert (delta("failed"), delta("succeeded"), delta("throttled")) == (2, 1, 0)


def test_issued_certificates_are_counted_by_key_type(
    app: Flask, client: FlaskClient, make_user: Callable[..., User]
) -> None:
    token = make_token(app, make_user("alice"), "ssh")
    before = value(scrape(client), "devspace_ssh_certificates_issued_total", key_type="ssh-ed25519")
    key = openssh_public(ed25519.Ed25519PrivateKey.generate())
    for _ in range(2):
        issued = client.post(
            "/api/v1/ssh/certificates", json={"public_key": key}, headers=bearer(token)
        )
        assert issued.status_code == 200, issued.get_json()
    refused = client.post(
        "/api/v1/ssh/certificates", json={"public_key": "ssh-dss AAAA"}, headers=bearer(token)
    )
    assert refused.status_code == 422
    after = value(scrape(client), "devspace_ssh_certificates_issued_total", key_type="ssh-ed25519")
    assert after - before == 2


def test_reconcile_passes_are_timed_and_failures_counted_by_kind() -> None:
    found = metrics.instruments()

    def count(name: str, **labels: str) -> float:
        return found.registry.get_sample_value(name, labels) or 0.0

    before = {
        "ok": count("devspace_reconcile_duration_seconds_count", result="ok"),
        "cluster": count("devspace_reconcile_errors_total", kind="cluster"),
        "unexpected": count("devspace_reconcile_errors_total", kind="unexpected"),
    }

    def reconcile(key: str) -> str:
        if key == "cluster":
            raise ClusterError("the API server said no")
        if key == "bug":
            raise KeyError(key)
        return f"done {key}"

    assert metrics.timed_reconcile(reconcile, "fine", ClusterError) == "done fine"
    with pytest.raises(ClusterError):
        metrics.timed_reconcile(reconcile, "cluster", ClusterError)
    with pytest.raises(KeyError):
        metrics.timed_reconcile(reconcile, "bug", ClusterError)
    assert count("devspace_reconcile_duration_seconds_count", result="ok") - before["ok"] == 1
    assert count("devspace_reconcile_errors_total", kind="cluster") - before["cluster"] == 1
    assert count("devspace_reconcile_errors_total", kind="unexpected") - before["unexpected"] == 1
    assert count("devspace_reconcile_duration_seconds_count", result="error") >= 1


def test_nothing_imports_prometheus_client_before_serve_sets_its_directory() -> None:
    # prometheus_client picks single- or multi-process mode once, when first imported; serve
    # sets the directory after importing our modules, before gunicorn forks.
    code = (
        "import sys\n"
        "import devspace_server.main, devspace_server.app, devspace_server.gunicorn_conf\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "False"


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - http to us
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_serve_adds_up_the_counts_of_all_its_workers(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
    env.pop(metrics.MULTIPROC_ENV, None)
    env |= {"HOME": str(tmp_path), "DEVSPACE_DATA_DIR": str(tmp_path / "data")}
    env["DEVSPACE_METRICS_TOKEN"] = METRICS_TOKEN
    stale = tmp_path / "data" / "metrics" / "counter_99999.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run")
    process = Process(
        "devspace-server",
        [str(SERVER), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "3"],
        tmp_path / "serve.log",
        env=env,
    )
    try:
        wait_until(
            lambda: _get(port, "/healthz")[0] == 200, what="serve", timeout=30, process=process
        )
        assert not stale.exists()
        status, text = _get(port, "/metrics", METRICS_TOKEN)
        assert status == 200, text
        route = {"method": "GET", "route": "/healthz", "status": "200"}
        start = value(parse(text), "devspace_http_requests_total", **route)

        def workers() -> set[str]:
            return {p.name.split("_")[-1] for p in (tmp_path / "data" / "metrics").glob("*.db")}

        # Requests at once, until at least two workers have answered some: one after another,
        # the kernel may hand every connection to the same worker.
        sent, deadline = 0, time.monotonic() + 30
        with ThreadPoolExecutor(8) as pool:
            while len(workers()) < 2:
                assert time.monotonic() < deadline, f"only one worker answered: {workers()}"
                answers = list(pool.map(lambda _: _get(port, "/healthz")[0], range(40)))
                assert answers == [200] * 40
                sent += 40
        # Whichever worker answers the scrape, it reports the sum over all of them.
        for _ in range(5):
            status, text = _get(port, "/metrics", METRICS_TOKEN)
            assert value(parse(text), "devspace_http_requests_total", **route) == start + sent
        assert _get(port, "/metrics")[0] == 401
    finally:
        process.stop()


def test_gunicorn_with_the_packaged_settings_adds_up_its_workers_and_logs_json(
    tmp_path: Path,
) -> None:
    """The container's way: `gunicorn -c python:devspace_server.gunicorn_conf …wsgi:app`."""
    port, directory = free_port(), tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_4242.db").write_bytes(b"left by an earlier container")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
    env |= {
        "HOME": str(tmp_path),
        "DEVSPACE_DATA_DIR": str(tmp_path / "data"),
        "DEVSPACE_SECRET_KEY": SECRET,
        "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS": HOST_KEY_ENCRYPTION_KEY,
        "DEVSPACE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DEVSPACE_METRICS_TOKEN": METRICS_TOKEN,
        metrics.MULTIPROC_ENV: str(directory),
    }
    subprocess.run([str(SERVER), "migrate"], env=env, check=True, capture_output=True)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn), "-c", "python:devspace_server.gunicorn_conf", "--workers", "3"]
    command += ["--bind", f"127.0.0.1:{port}", "devspace_server.wsgi:app"]
    process = Process("gunicorn", command, tmp_path / "gunicorn.log", env=env)
    try:
        wait_until(
            lambda: _get(port, "/healthz")[0] == 200, what="gunicorn", timeout=30, process=process
        )
        assert not (directory / "counter_4242.db").exists()
        route = {"method": "GET", "route": "/readyz", "status": "200"}
        start = value(
            parse(_get(port, "/metrics", METRICS_TOKEN)[1]), "devspace_http_requests_total", **route
        )
        for _ in range(20):
            assert _get(port, "/readyz")[0] == 200
        for _ in range(4):
            text = _get(port, "/metrics", METRICS_TOKEN)[1]
            assert value(parse(text), "devspace_http_requests_total", **route) == start + 20
    finally:
        process.stop()
    lines = (tmp_path / "gunicorn.log").read_text().splitlines()
    loggers = {json.loads(line)["logger"] for line in lines if line.startswith("{")}
    assert "gunicorn.error" in loggers
    assert not [line for line in lines if "GET /readyz HTTP" in line]  # no gunicorn access log


def test_an_upstream_sign_in_is_counted_under_its_provider(
    serve: Serve, page: Page, live: LiveServer
) -> None:
    client = serve().test_client()
    labels = {"method": NAME, "result": "succeeded"}
    before = value(scrape(client), "devspace_logins_total", **labels)
    upstream_sign_in(page, live, TITLE, "alice", IDP_PASSWORD)
    assert value(scrape(client), "devspace_logins_total", **labels) - before == 1


@pytest.mark.parametrize(
    ("token", "says"),
    [("short", "too short"), ("m" * 40, "placeholder"), (SECRET, "equals DEVSPACE_SECRET_KEY")],
)
def test_a_weak_or_reused_metrics_token_is_refused(
    settings: dict[str, str], token: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(settings | {"DEVSPACE_METRICS_TOKEN": token})
    (problem,) = caught.value.problems
    assert problem.startswith("DEVSPACE_METRICS_TOKEN")
    assert says in problem
