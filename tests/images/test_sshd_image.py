"""sshd-image/, built from its Dockerfile (testbed.rootfs) and run with its own entrypoint,
user and environment: as the dev pod's sidecar (the reconciler's mounts, uid 1000) and as the
gateway (the Helm chart's mounts, uid 10001, read-only root), against OpenSSH's client with
certificates from an ssh-keygen CA.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_public_identity

from devspace_server.api.gateway import principals_line
from testbed import imagerun, rootfs

from .conftest import container, in_netns, secret_file, wait_for_port

OWNER = "3f1c5a0e-owner-principal"
IDLE = "9d2e7b41-no-running-space"
SPACE_UID = 1000
GATEWAY_UID = 10001
GATEWAY_PORT = 2022
SECRET = "gateway-shared-secret-for-the-image-test"  # noqa: S105 - a test value


@dataclass
class Keys:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def certificate(self, principal: str) -> Path:
        """A copy of the user key with a certificate for `principal`; returns the key path."""
        key = self.path(f"user-{principal}")
        key.write_bytes(self.path("user").read_bytes())
        key.chmod(0o600)
        key.with_suffix(".pub").write_bytes(self.path("user.pub").read_bytes())
        sign = ["ssh-keygen", "-q", "-s", str(self.path("ca")), "-I", principal, "-V", "-1m:+1h"]
        subprocess.run([*sign, "-n", principal, str(key.with_suffix(".pub"))], check=True)
        return key


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    directory = tmp_path / "keys"
    directory.mkdir()
    for name in ("ca", "host", "gateway-host", "user"):
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name]
        subprocess.run([*keygen, "-f", str(directory / name)], check=True)
    return Keys(directory)


def sidecar(image: rootfs.Image, tmp: Path, keys: Keys, netns: Path) -> imagerun.Container:
    """The sidecar as the reconciler's pod spec runs it (server/devspace_server/kube/workload.py):
    the image's entrypoint and CMD, runAsUser/runAsGroup/fsGroup 1000, Secret volumes 0440/0444."""
    volumes = tmp / "sidecar"
    host_key = secret_file(
        volumes / "host-key/ssh_host_ed25519_key", keys.path("host").read_bytes(), SPACE_UID
    )
    ca = secret_file(volumes / "ca/ca.pub", keys.path("ca.pub").read_bytes(), SPACE_UID, 0o444)
    principals = secret_file(volumes / "principals/principals", f"{OWNER}\n", SPACE_UID, 0o444)
    workspace = volumes / "workspace"
    workspace.mkdir()
    os.chown(workspace, SPACE_UID, SPACE_UID)
    return container(
        image,
        tmp,
        "sidecar",
        uid=SPACE_UID,
        fs_group=SPACE_UID,
        netns=netns,
        volumes=[
            (host_key.parent, "/etc/devspace/host-key", True),
            (ca.parent, "/etc/devspace/ca", True),
            (principals.parent, "/etc/devspace/principals", True),
            (workspace, "/workspace", False),
        ],
    )


def ssh(netns: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """OpenSSH's client (or `sftp`, as args[0]) inside `netns`."""
    program = args[0] if args[0] in ("ssh", "sftp") else "ssh"
    rest = args[1:] if args[0] in ("ssh", "sftp") else args
    options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"]
    done = subprocess.run(
        ["nsenter", f"--net={netns}", program, *options, *rest],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def client_options(keys: Keys, principal: str, host_key: str, port: int) -> list[str]:
    key = keys.certificate(principal)
    known = keys.path(f"known-{port}")
    known.write_text(f"[127.0.0.1]:{port} {keys.path(host_key + '.pub').read_text()}")
    return [
        "-i",
        str(key),
        "-o",
        f"CertificateFile={key}-cert.pub",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        f"Port={port}",
    ]


def test_sidecar_runs_a_command_and_takes_a_file_over_sftp(
    sshd_image: rootfs.Image, tmp_path: Path, keys: Keys, netns: Path
) -> None:
    assert sshd_image.config["entrypoint"] == ["/usr/local/bin/devspace-sshd"]
    assert sshd_image.config["cmd"] == ["sidecar"]
    spec = sidecar(sshd_image, tmp_path, keys, netns)
    with imagerun.running(spec) as process:
        seconds = wait_for_port(netns, 2222, process)
        print(f"sidecar: SSH banner {seconds:.3f} s after start", file=sys.stderr)
        options = client_options(keys, OWNER, "host", 2222)
        done = ssh(netns, *options, "dev@127.0.0.1", "id -u; id -g; pwd; echo made > made.txt")
        assert done.stdout.split() == ["1000", "1000", "/workspace"]
        workspace = tmp_path / "sidecar/workspace"
        made = workspace / "made.txt"
        assert made.read_text() == "made\n"
        assert (made.stat().st_uid, made.stat().st_mode & 0o777) == (SPACE_UID, 0o644)

        upload = tmp_path / "upload.bin"
        upload.write_bytes(os.urandom(200_000))
        batch = tmp_path / "batch"
        batch.write_text(
            f"mkdir sub\nput {upload} sub/upload.bin\nget sub/upload.bin {tmp_path}/back\n"
        )
        ssh(netns, "sftp", *options, "-b", str(batch), "dev@127.0.0.1")
        assert (workspace / "sub/upload.bin").read_bytes() == upload.read_bytes()
        assert (tmp_path / "back").read_bytes() == upload.read_bytes()

        # The principals file decides: a valid certificate for someone else gets nothing.
        other = client_options(keys, IDLE, "host", 2222)
        refused = ssh(netns, *other, "dev@127.0.0.1", "true", check=False)
        assert refused.returncode == 255
        assert "Permission denied" in refused.stderr
    log = (tmp_path / "sidecar.log").read_text()
    assert "Accepted publickey for dev from 127.0.0.1" in log


class Principals:
    """The server's `/internal/gateway/principals`, reduced to this test: OWNER may reach the
    sidecar at 127.0.0.1:2222, IDLE has no running space, and the secret is checked."""

    def __init__(self, netns: Path) -> None:
        self.requests: list[dict[str, list[str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                owner.requests.append(form)
                if self.headers.get("Authorization") != f"Bearer {SECRET}":
                    self.send_response(401)
                    self.end_headers()
                    return
                cert = load_ssh_public_identity(
                    f"{form['key_type'][0]} {form['certificate'][0]}".encode()
                )
                principal = cert.valid_principals[0].decode()  # type: ignore[union-attr]
                pods = ["127.0.0.1"] if principal == OWNER else []
                body = principals_line(principal, pods).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = in_netns(netns, lambda: ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def principals(netns: Path) -> Iterator[Principals]:
    endpoint = Principals(netns)
    yield endpoint
    endpoint.close()


def gateway(
    image: rootfs.Image, tmp: Path, keys: Keys, netns: Path, url: str
) -> imagerun.Container:
    """The gateway as helm/devspace/templates/gateway.yaml runs it: args [gateway] (plus a
    port, as the test node passes one), uid/gid/fsGroup 10001, read-only root, an emptyDir
    at /run/devspace-sshd, the host key (0440), the CA's public key, server URL and secret."""
    volumes = tmp / "gateway"
    host_key = secret_file(
        volumes / "host-key/ssh_host_ed25519_key",
        keys.path("gateway-host").read_bytes(),
        GATEWAY_UID,
    )
    ca = secret_file(volumes / "ca/ca.pub", keys.path("ca.pub").read_bytes(), GATEWAY_UID, 0o444)
    secret_file(volumes / "gateway/server-url", url, GATEWAY_UID)
    secret_file(volumes / "gateway/secret", SECRET, GATEWAY_UID)
    return container(
        image,
        tmp,
        "gateway",
        args=["gateway", "-p", str(GATEWAY_PORT)],
        uid=GATEWAY_UID,
        fs_group=GATEWAY_UID,
        netns=netns,
        read_only_root=True,
        tmpfs=[("/run/devspace-sshd", "mode=0777,size=1m")],
        volumes=[
            (host_key.parent, "/etc/devspace/host-key", True),
            (ca.parent, "/etc/devspace/ca", True),
            (volumes / "gateway", "/etc/devspace/gateway", True),
        ],
    )


def test_gateway_forwards_only_to_what_the_server_answers(
    sshd_image: rootfs.Image, tmp_path: Path, keys: Keys, netns: Path, principals: Principals
) -> None:
    side = sidecar(sshd_image, tmp_path, keys, netns)
    gate = gateway(sshd_image, tmp_path, keys, netns, principals.url)
    with imagerun.running(side) as sidecar_process, imagerun.running(gate) as gateway_process:
        wait_for_port(netns, 2222, sidecar_process)
        wait_for_port(netns, GATEWAY_PORT, gateway_process)
        through = client_options(keys, OWNER, "gateway-host", GATEWAY_PORT)
        jump = " ".join(
            ["ssh", "-o", "BatchMode=yes", *through, "-W", "%h:%p", "devspace@127.0.0.1"]
        )
        inner = client_options(keys, OWNER, "host", 2222)
        done = ssh(netns, *inner, "-o", f"ProxyCommand={jump}", "dev@127.0.0.1", "echo through")
        assert done.stdout == "through\n"
        asked = principals.requests[0]
        assert asked["user"] == ["devspace"]
        assert asked["key_type"][0].startswith("ssh-ed25519-cert")

        # The sidecar listens on every address of its namespace, but the server's answer
        # allows 127.0.0.1:2222 only.
        elsewhere = ssh(netns, *through, "-W", "127.0.0.2:2222", "devspace@127.0.0.1", check=False)
        assert elsewhere.returncode != 0
        assert "stdio forwarding failed" in elsewhere.stderr
        # No sessions on the gateway, only forwarding.
        shell = ssh(netns, *through, "devspace@127.0.0.1", "id", check=False)
        assert shell.returncode != 0
        assert "uid=" not in shell.stdout
        # Someone without a running space: the server answers nothing, sshd refuses.
        idle = client_options(keys, IDLE, "gateway-host", GATEWAY_PORT)
        refused = ssh(netns, *idle, "-W", "127.0.0.1:2222", "devspace@127.0.0.1", check=False)
        assert refused.returncode == 255
        assert "Permission denied" in refused.stderr
        # The script reads the secret at every login: with a wrong one the server answers
        # 401, the script fails and sshd refuses even the owner (it fails closed).
        (tmp_path / "gateway/gateway/secret").write_text("not-the-secret")
        closed = ssh(netns, *through, "-W", "127.0.0.1:2222", "devspace@127.0.0.1", check=False)
        assert closed.returncode == 255
        assert "Permission denied" in closed.stderr
    gateway_log = (tmp_path / "gateway.log").read_text()
    assert "Accepted publickey for devspace" in gateway_log
    assert "to connect to host 127.0.0.2 port 2222, but the request was denied" in gateway_log
    # sshd asks on every login attempt (twice for one that succeeds), the refused one too.
    assert {form["user"][0] for form in principals.requests} == {"devspace"}
    assert len(principals.requests) >= 4
