"""The server image (the repository's Dockerfile), built without Docker (testbed.rootfs) and
run as the Helm chart runs it: uid 10001, a read-only root with only /dev/shm and the data
directory writable, `devspace-server migrate` first, then the image's own CMD (gunicorn).

The base is a stand-in: Debian's Python 3.11.2 where the Dockerfile names the python image's
3.11.14 (see testbed.rootfs).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from devspace_server.host_key_sealing import new_keys_file_content
from testbed import imagerun, rootfs

from .conftest import container, in_netns, secret_file, wait_for_port

UID = 10001
METRICS_TOKEN = secrets.token_urlsafe(48)
REQUESTS = 12


def server(image: rootfs.Image, tmp: Path, name: str, **options: object) -> imagerun.Container:
    data = tmp / "data"  # the chart's PVC (or emptyDir), owned by fsGroup 10001
    data.mkdir(exist_ok=True)
    os.chown(data, UID, UID)
    secret = secret_file(tmp / "server/secret-key", os.urandom(32).hex(), UID)
    keys = secret_file(tmp / "host-key-encryption/keys", new_keys_file_content(), UID)
    return container(
        image,
        tmp,
        name,
        uid=UID,
        fs_group=UID,
        read_only_root=True,
        env={
            "DEVSPACE_SECRET_KEY_FILE": "/etc/devspace/server/secret-key",
            "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS_FILE": "/etc/devspace/host-key-encryption/keys",
            "DEVSPACE_PUBLIC_URL": "https://devspace.example.test",
            "DEVSPACE_METRICS_TOKEN": METRICS_TOKEN,
        },
        volumes=[
            (data, "/var/lib/devspace", False),
            (secret.parent, "/etc/devspace/server", True),
            (keys.parent, "/etc/devspace/host-key-encryption", True),
        ],
        **options,  # type: ignore[arg-type]
    )


def run_once(spec: imagerun.Container) -> tuple[int, str]:
    with imagerun.running(spec) as process:
        status = process.wait(120)
    assert spec.log is not None
    return status, spec.log.read_text()


def test_image_config_is_what_the_dockerfile_says(server_image: rootfs.Image) -> None:
    config = server_image.config
    assert config["user"] == "10001:10001"
    assert config["workdir"] == "/var/lib/devspace"
    assert str(config["env"]["PATH"]).startswith("/opt/devspace/bin:")  # type: ignore[index]
    assert config["cmd"][0] == "gunicorn"  # type: ignore[index]
    assert config["python"] == "Python 3.11.2"  # the stand-in's, see the module docstring
    compiled = list((server_image.rootfs / "opt/devspace/lib").rglob("wsgi.cpython-311.pyc"))
    assert compiled, "the Dockerfile compiles the virtualenv for the read-only root"


def test_root_is_read_only_and_the_user_is_10001(
    server_image: rootfs.Image, tmp_path: Path
) -> None:
    probe = "id -u; id -g; touch /opt/devspace/x 2>&1; touch /var/lib/devspace/ok && echo ok"
    status, output = run_once(server(server_image, tmp_path, "probe", argv=["sh", "-c", probe]))
    assert status == 0, output
    lines = output.splitlines()
    assert lines[:2] == ["10001", "10001"]
    assert "Read-only file system" in lines[2]
    assert lines[3] == "ok"


def test_migrate_then_gunicorn_answers_health_and_readiness(
    server_image: rootfs.Image, tmp_path: Path, netns: Path
) -> None:
    status, output = run_once(
        server(server_image, tmp_path, "migrate", argv=["devspace-server", "migrate"])
    )
    assert status == 0, output
    assert (tmp_path / "data").stat().st_uid == UID
    assert any(p.stat().st_uid == UID for p in (tmp_path / "data").iterdir()), "no database"

    spec = server(server_image, tmp_path, "api", netns=netns)
    assert spec.argv == server_image.config["cmd"]
    with imagerun.running(spec) as process:
        started = time.monotonic()
        wait_for_port(netns, 8080, process, timeout=60)
        answers = {}
        for path in ("/healthz", "/readyz"):

            def get(path: str = path) -> tuple[int, bytes]:
                with urllib.request.urlopen(f"http://127.0.0.1:8080{path}", timeout=10) as r:
                    return r.status, r.read()

            answers[path] = in_netns(netns, get)
        print(
            f"server: /readyz 200 {time.monotonic() - started:.2f} s after start", file=sys.stderr
        )
        # Whichever worker answers a scrape, it counts every worker's requests (the image's
        # PROMETHEUS_MULTIPROC_DIR and gunicorn_conf's hooks).
        for _ in range(REQUESTS):
            in_netns(netns, lambda: _status("/api/v1/spaces"))
        counted = [in_netns(netns, _unauthenticated_spaces_requests) for _ in range(4)]
        workers = _descendants(process.pid)
        uids = {_uid(pid) for pid in workers}
    assert answers["/healthz"][0] == 200
    assert answers["/readyz"][0] == 200
    assert len(workers) >= 3  # gunicorn and its two workers
    assert uids == {UID}
    assert counted == [REQUESTS] * 4
    # gunicorn's lines too are the server's JSON, and there is no access log (query strings).
    lines = (tmp_path / "api.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert any("Booting worker" in record["message"] for record in records)
    assert not any("GET /healthz" in line for line in lines)


def _status(path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:8080{path}", timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def _unauthenticated_spaces_requests() -> float:
    """devspace_http_requests_total for GET /api/v1/spaces answered 401, from one scrape."""
    request = urllib.request.Request("http://127.0.0.1:8080/metrics")
    request.add_header("Authorization", f"Bearer {METRICS_TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "devspace_http_requests_total"
        and sample.labels.get("route") == "/api/v1/spaces"
        and sample.labels.get("status") == "401"
    )


def _descendants(pid: int) -> list[int]:
    """The processes under `pid` (the imagerun parent): the container's, seen from the host."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        found += map(int, children)
        pending += map(int, children)
    return found


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")
