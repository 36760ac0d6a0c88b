"""`devspace proxy` under the real OpenSSH client: who makes the gateway hop (by default the
proxy becomes `ssh -W`; with DEVSPACE_SSH_CLIENT=paramiko it relays in Python), and the
gateway's published host key pinned on either path, re-pinned when the server changes it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from ssh.gateway_bed import PORT

from devspace.certificates import GATEWAY_PINS, key_directory
from devspace.jump import GATEWAY_ALIAS
from devspace_server.ca import new_host_key

from .conftest import SPACE, Bed, Result
from .test_sshconfig import HOST, ssh

pytestmark = [pytest.mark.kube, pytest.mark.node]


@pytest.fixture
def config(bed: Bed, tmp_path: Path, devspace: Callable[..., Result]) -> Path:
    """`ssh-config --write` done into a fresh ~/.ssh; returns its `config`."""
    ssh_dir = tmp_path / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    result = devspace("ssh-config", "--write", "--ssh-dir", str(ssh_dir))
    assert result.code == 0, result.err
    return ssh_dir / "config"


@pytest.fixture
def pins(bed: Bed) -> Path:
    """The gateway's known_hosts file for `ssh -W`, absent at the start."""
    path = key_directory(bed.url) / GATEWAY_PINS
    path.unlink(missing_ok=True)
    return path


def children(pid: int) -> list[tuple[Path, list[str]]]:
    """(executable, argv) of each process whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode().split("\0")[:-1]
            exe = (entry / "exe").resolve()
        except OSError:
            continue  # ended meanwhile
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((exe, argv))
    return found


def proxy_process(config: Path) -> tuple[Path, list[str], str]:
    """The process OpenSSH runs as ProxyCommand during a session, seen while the session is
    up: (its executable, its argv, what the session's stderr said once it ended cleanly)."""
    with subprocess.Popen(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", HOST, "echo ready; cat >/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as session:
        assert session.stdin is not None
        assert session.stdout is not None
        assert session.stderr is not None
        try:
            line = session.stdout.readline()
            assert line == "ready\n", session.stderr.read()
            (running,) = children(session.pid)
        finally:
            session.stdin.close()  # the remote `cat` ends, and the session with it
            status = session.wait(30)
        assert status == 0
        return running[0], running[1], session.stderr.read()


def test_by_default_the_proxy_becomes_openssh_pinned_to_the_gateway(
    bed: Bed, config: Path, pins: Path
) -> None:
    exe, argv, stderr = proxy_process(config)
    # No Python left between the two ssh processes: the proxy exec'd `ssh -W`.
    ssh_program = shutil.which("ssh")
    assert ssh_program is not None
    assert exe == Path(ssh_program).resolve()
    assert argv[argv.index("-W") + 1] == f"{bed.alice.pod_ip}:2222"
    assert argv[-1] == bed.gateway_ip
    assert f'UserKnownHostsFile="{pins}"' in argv
    assert "StrictHostKeyChecking=yes" in argv
    assert pins.read_text() == f"{GATEWAY_ALIAS} {bed.gateway_keys_file.read_text().strip()}\n"
    assert stderr == ""  # nothing from the hop on a clean session (no "Killed by signal")


def test_with_paramiko_chosen_the_proxy_relays_in_python(
    bed: Bed, config: Path, pins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVSPACE_SSH_CLIENT", "paramiko")
    _, argv, stderr = proxy_process(config)
    assert argv[1:5] == ["-m", "devspace", "proxy", "--server"]
    assert argv[-1] == SPACE
    assert not pins.exists()  # OpenSSH's file: not made when OpenSSH is not used
    assert stderr == ""
    result = ssh(config, HOST, "echo $USER $PWD")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dev /workspace\n"


def test_an_unknown_client_choice_is_a_clear_error(
    bed: Bed, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVSPACE_SSH_CLIENT", "putty")
    result = ssh(config, HOST, "echo reached")
    assert result.returncode == 255
    assert "devspace: error: DEVSPACE_SSH_CLIENT='putty': write auto, openssh or paramiko" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.fixture(params=["auto", "paramiko"])
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """DEVSPACE_SSH_CLIENT, set for the test: each test using it runs with each."""
    choice: str = request.param
    monkeypatch.setenv("DEVSPACE_SSH_CLIENT", choice)
    return choice


def test_a_gateway_whose_key_is_not_the_published_one_is_refused(
    bed: Bed, config: Path, pins: Path, tmp_path: Path, client: str
) -> None:
    impostor = new_host_key()
    published = tmp_path / "impostor.pub"
    published.write_text(impostor.public_line + "\n")
    with bed.serving(f"{bed.gateway_ip}:{PORT}", published):
        result = ssh(config, HOST, "echo reached")
    assert result.returncode == 255
    assert "reached" not in result.stdout
    assert "Traceback" not in result.stderr
    if client == "auto":
        # OpenSSH's own words, about the gateway (its alias), from the exec'd `ssh -W`.
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr
        assert f"Host key for {GATEWAY_ALIAS} has changed" in result.stderr
        assert pins.read_text().split()[1:] == impostor.public_line.split()[:2]
    else:
        assert "devspace: error: host key mismatch for the gateway: expected " in result.stderr
        assert impostor.fingerprint in result.stderr

    # The server publishes the real key again: the proxy pins it again, and ssh gets through.
    again = ssh(config, HOST, "echo reached")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "reached\n"
    if client == "auto":
        assert pins.read_text().split()[1:] == bed.gateway_keys_file.read_text().split()[:2]


def test_the_pins_file_is_left_alone_when_it_is_right(bed: Bed, config: Path, pins: Path) -> None:
    assert ssh(config, HOST, "true").returncode == 0
    before = pins.stat()
    assert ssh(config, HOST, "true").returncode == 0
    after = pins.stat()
    # Not rewritten by every connection (VS Code opens several at once).
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert oct(after.st_mode & 0o777) == oct(0o600)
