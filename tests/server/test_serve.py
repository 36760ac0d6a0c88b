"""`devspace-server serve`, really started: gunicorn with two workers on a free port."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.process import Process, free_port, wait_until

from .conftest import PASSWORD

SERVER = Path(sys.executable).with_name("devspace-server")


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
    return {**env, "HOME": str(home), "DEVSPACE_DATA_DIR": str(home / "data"), **extra}


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, json.load(response)


def workers_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


class Served:
    def __init__(self, home: Path, port: int) -> None:
        self.port = port
        self.process = Process(
            "devspace-server",
            [str(SERVER), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            home / f"serve-{port}.log",
            env=environment(home),
        )
        wait_until(
            lambda: get(port, "/healthz")[0] == 200,
            what="devspace-server serve",
            timeout=30,
            process=self.process,
        )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def served(home: Path) -> Iterator[Served]:
    server = Served(home, free_port())
    yield server
    server.process.stop()


def test_serve_answers_with_two_workers_and_keeps_its_secret_key(
    home: Path, served: Served
) -> None:
    assert get(served.port, "/healthz") == (200, {"status": "ok"})
    assert get(served.port, "/readyz") == (200, {"status": "ok"})
    status, document = get(served.port, "/api/v1/openapi.json")
    assert status == 200
    assert document["servers"] == [{"url": f"http://127.0.0.1:{served.port}"}]
    wait_until(
        lambda: len(workers_of(served.process.popen.pid)) == 2, what="two workers", timeout=10
    )

    key_file = home / "data" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "data").stat().st_mode) == 0o700
    key = key_file.read_text()
    assert len(key.strip()) >= 48
    assert (home / "data" / "devspace.db").is_file()

    served.process.stop()
    assert served.process.popen.returncode == 0
    again = Served(home, free_port())
    try:
        assert get(again.port, "/readyz")[0] == 200
        assert key_file.read_text() == key
    finally:
        again.process.stop()


def test_an_admin_signs_in_through_the_real_server(home: Path, served: Served) -> None:
    created = subprocess.run(
        [str(SERVER), "create-admin", "--username", "root"],
        input=PASSWORD + "\n",
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    user_id = created.stdout.strip()
    assert len(user_id) == 36

    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    base = f"http://127.0.0.1:{served.port}"
    with browser.open(f"{base}/login", timeout=5) as page:
        html = page.read().decode()
    token = html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = {"username": "root", "password": PASSWORD, "csrf_token": token}
    with browser.open(
        f"{base}/login", urllib.parse.urlencode(form).encode(), timeout=5
    ) as home_page:
        assert home_page.url == f"{base}/"
        assert "Signed in as <strong>root</strong> (admin)" in home_page.read().decode()
    for _ in range(4):  # whichever worker answers, the session is in the database
        with browser.open(f"{base}/", timeout=5) as again:
            assert "Signed in as <strong>root</strong>" in again.read().decode()


def run_serve(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVER), "serve", *args],
        env=environment(home, **env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_port_in_use_is_one_clear_line(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_serve(home, "--bind", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: 127.0.0.1:{port} is in use: stop what listens there, "
        "or choose another port with --bind\n"
    )


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ([], {"DEVSPACE_LOG_LEVEL": "LOUD"}, "Error: DEVSPACE_LOG_LEVEL is 'LOUD': use one of"),
        (["--bind", "0.0.0.0:8080"], {}, "Error: DEVSPACE_PUBLIC_URL is not set"),
        (["--bind", "nowhere"], {}, "Error: --bind 'nowhere' is not HOST:PORT"),
        (
            [],
            {"DEVSPACE_DATABASE_URL": "postgresql://devspace@127.0.0.1:1/devspace"},
            "Error: cannot reach the database at postgresql+psycopg://devspace@127.0.0.1:1/",
        ),
    ],
)
def test_bad_configuration_is_one_clear_line(
    home: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    done = run_serve(home, *(args or ["--bind", f"127.0.0.1:{free_port()}"]), **env)
    assert done.returncode == 1
    assert done.stderr.startswith(says)
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_secret_key_file_others_can_read_is_refused(home: Path) -> None:
    (home / "data").mkdir(mode=0o700)
    key = home / "data" / "secret_key"
    key.write_text("x" * 64)
    key.chmod(0o644)
    done = run_serve(home, "--bind", f"127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert done.stderr == f"Error: {key} may be read by others (mode 644): chmod 600 it\n"
