"""`serve` makes the SSH gateway's shared secret on first start and keeps it, so the
embedded default's gateway endpoint answers the gateway (and nobody else)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import requests

from devspace_server import metrics
from devspace_server.serve import Bind, ServeError, serve_config
from testbed.process import Process, free_port, wait_until

SERVER = Path(sys.executable).with_name("devspace-server")
LOOPBACK = Bind("127.0.0.1", 8080)


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
    env.pop(metrics.MULTIPROC_ENV, None)
    return {**env, "HOME": str(home), "DEVSPACE_DATA_DIR": str(home / "data"), **extra}


def test_the_gateway_secret_is_made_once_private_and_kept(tmp_path: Path) -> None:
    env = {"DEVSPACE_DATA_DIR": str(tmp_path / "data")}
    first = serve_config(env, LOOPBACK)
    secret_file = tmp_path / "data" / "gateway_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert first.gateway_secret == secret_file.read_text().strip()
    assert first.gateway_secret is not None
    assert len(first.gateway_secret) >= 48
    assert first.gateway_secret != first.secret_key
    again = serve_config(env, LOOPBACK)
    assert again.gateway_secret == first.gateway_secret


def test_a_configured_gateway_secret_wins_and_no_file_is_made(tmp_path: Path) -> None:
    chosen = "configured-gateway-secret-0123456789-abcdef"
    config = serve_config(
        {"DEVSPACE_DATA_DIR": str(tmp_path / "data"), "DEVSPACE_GATEWAY_SECRET": chosen}, LOOPBACK
    )
    assert config.gateway_secret == chosen
    assert not (tmp_path / "data" / "gateway_secret").exists()


def test_a_gateway_secret_file_others_may_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    secret_file = tmp_path / "data" / "gateway_secret"
    secret_file.write_text("x" * 64)
    secret_file.chmod(0o644)
    with pytest.raises(ServeError, match="may be read by others"):
        serve_config({"DEVSPACE_DATA_DIR": str(tmp_path / "data")}, LOOPBACK)


def principals(port: int, secret: str) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{port}/internal/gateway/principals",
        data={"user": "someone"},  # no certificate: a configured endpoint says 400
        headers={"Authorization": f"Bearer {secret}"},
        timeout=5,
    )


def start(home: Path) -> tuple[Process, int]:
    port = free_port()
    process = Process(
        "devspace-server",
        [str(SERVER), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        home / f"serve-{port}.log",
        env=environment(home),
    )
    wait_until(
        lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok,
        what="devspace-server serve",
        timeout=30,
        process=process,
    )
    return process, port


def test_the_embedded_gateway_endpoint_answers_the_gateway_across_restarts(
    tmp_path: Path,
) -> None:
    process, port = start(tmp_path)
    try:
        secret = (tmp_path / "data" / "gateway_secret").read_text().strip()
        answer = principals(port, secret)
        assert answer.status_code == 400, answer.text
        assert answer.json()["detail"].startswith("Send the form field")
        assert principals(port, "not-the-secret").status_code == 401
    finally:
        process.stop()
    process, port = start(tmp_path)
    try:
        assert (tmp_path / "data" / "gateway_secret").read_text().strip() == secret
        assert principals(port, secret).status_code == 400
    finally:
        process.stop()
