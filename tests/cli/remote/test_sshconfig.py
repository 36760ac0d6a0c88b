"""`devspace ssh-config` and `devspace proxy`, used by the real OpenSSH client (ssh, scp), and
the pinned sidecar host key: a key other than the published one stops every client."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ssh.gateway_bed import changed

from devspace.certificates import key_directory
from devspace_server.ca import new_host_key
from devspace_server.models import Space

from .conftest import SPACE, Bed, Result

pytestmark = [pytest.mark.kube, pytest.mark.node]

HOST = f"devspace-{SPACE}"


@pytest.fixture
def ssh_dir(tmp_path: Path) -> Path:
    directory = tmp_path / ".ssh"
    directory.mkdir(mode=0o700)
    (directory / "config").write_text("# mine\nHost example\n  User me\n")
    return directory


@pytest.fixture
def written(bed: Bed, ssh_dir: Path, devspace: Callable[..., Result]) -> Path:
    result = devspace("ssh-config", "--write", "--ssh-dir", str(ssh_dir))
    assert result.code == 0, result.err
    assert HOST in result.err
    return ssh_dir / "config"


def ssh(config: Path, *args: str, program: str = "ssh") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program, "-F", str(config), "-o", "BatchMode=yes", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_openssh_runs_a_command_in_the_space_through_the_proxy(written: Path) -> None:
    result = ssh(written, HOST, "echo $USER $PWD")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dev /workspace\n"


def test_scp_copies_into_the_workspace(written: Path, tmp_path: Path) -> None:
    local = tmp_path / "payload.bin"
    local.write_bytes(bytes(range(256)) * 64)
    copied = ssh(written, str(local), f"{HOST}:payload.bin", program="scp")
    assert copied.returncode == 0, copied.stderr
    result = ssh(written, HOST, "sha256sum /workspace/payload.bin")
    assert result.returncode == 0, result.stderr
    expected = subprocess.run(["sha256sum", str(local)], capture_output=True, text=True, check=True)
    assert result.stdout.split()[0] == expected.stdout.split()[0]


def test_a_space_name_another_server_has_gets_a_host_of_its_own(
    bed: Bed, ssh_dir: Path, devspace: Callable[..., Result]
) -> None:
    # Another server's spaces, written first: OpenSSH would take its `Host` for ours.
    (ssh_dir / "devspace").mkdir()
    (ssh_dir / "devspace" / "0-other-server.conf").write_text(
        f"Host {HOST}\n  HostName 192.0.2.1\n  ProxyCommand false\n"
    )
    result = devspace("ssh-config", "--write", "--ssh-dir", str(ssh_dir))
    assert result.code == 0, result.err
    ours = f"{HOST}.{urlsplit(bed.url).netloc.replace(':', '-')}"
    assert f"Space {SPACE} is {ours}" in result.err

    reached = ssh(ssh_dir / "config", ours, "echo $USER $PWD")
    assert reached.returncode == 0, reached.stderr
    assert reached.stdout == "dev /workspace\n"
    # The other server's host is left as it was: ours never takes its name.
    assert ssh(ssh_dir / "config", HOST, "true").returncode != 0


def test_writing_is_idempotent_and_keeps_the_persons_own_lines(
    written: Path, ssh_dir: Path, devspace: Callable[..., Result]
) -> None:
    first = {p: p.read_bytes() for p in ssh_dir.rglob("*") if p.is_file()}
    again = devspace("ssh-config", "--write", "--ssh-dir", str(ssh_dir))
    assert again.code == 0, again.err
    assert {p: p.read_bytes() for p in ssh_dir.rglob("*") if p.is_file()} == first
    text = written.read_text()
    assert text.count("Include ") == 1
    # First, so that OpenSSH's first-value-wins gives our pins precedence; theirs kept whole.
    assert text.splitlines()[1].startswith("Include ")
    assert text.endswith("# mine\nHost example\n  User me\n")


def test_printing_writes_nothing(bed: Bed, ssh_dir: Path, devspace: Callable[..., Result]) -> None:
    result = devspace("ssh-config", "--ssh-dir", str(ssh_dir))
    assert result.code == 0, result.err
    assert f"Host {HOST}\n" in result.out
    assert "StrictHostKeyChecking yes" in result.out
    assert not (ssh_dir / "devspace").exists()
    assert (ssh_dir / "config").read_text() == "# mine\nHost example\n  User me\n"


def test_a_missing_certificate_is_renewed_before_openssh_reads_it(bed: Bed, written: Path) -> None:
    certificate = key_directory(bed.url) / "id_ed25519-cert.pub"
    certificate.unlink()
    result = ssh(written, HOST, "true")
    assert result.returncode == 0, result.stderr
    assert certificate.exists()


@pytest.fixture
def impostor_key(bed: Bed) -> Iterator[None]:
    """The space's published host key is not the sidecar's for the duration."""
    other = new_host_key()
    with changed(
        bed.live.app,
        Space,
        bed.alice.space_id,
        host_public_key=other.public_line,
        host_key_fingerprint=other.fingerprint,
    ):
        yield


def test_openssh_refuses_a_sidecar_whose_key_is_not_the_published_one(
    written: Path, impostor_key: None
) -> None:
    result = ssh(written, HOST, "echo reached")
    assert result.returncode == 255
    assert "reached" not in result.stdout
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_the_cli_refuses_a_sidecar_whose_key_is_not_the_published_one(
    devspace: Callable[..., Result], impostor_key: None
) -> None:
    result = devspace("exec", SPACE, "--", "echo", "reached")
    assert result.code == 5
    assert "reached" not in result.out
    assert "host key mismatch for space work" in result.err
    assert "do not connect until they agree" in result.err
