"""`devspace sync --once` in a project, against the whole stack: the space, the folders and the
rules come from devspace.yaml, and the files travel through the real gateway."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from stack import Stack

from devspace.api import Api
from devspace.remote import connect

from .conftest import Result

pytestmark = [pytest.mark.kube, pytest.mark.node]


@pytest.mark.usefixtures("user")
def test_sync_takes_the_space_folders_and_rules_from_devspace_yaml(
    stack: Stack, project: Path, devspace: Callable[..., Result]
) -> None:
    (project / "devspace.yaml").write_text(
        "name: synced\nimage: devspace.test/shell\ncommand: [sleep, infinity]\n"
        "sync:\n  local: src\n  remote: /workspace/app\n"
        "  ignore: ['*.log']\n  no_upload: [local-only.txt]\n"
    )
    source = project / "src"
    source.mkdir()
    (source / "main.py").write_text("print('hi')\n")
    (source / "debug.log").write_text("noise\n")
    (source / "local-only.txt").write_text("stays here\n")
    started = devspace("up", "-d")
    assert started.code == 0, started.err

    synced = devspace("sync", "--once")
    assert synced.code == 0, synced.err
    with connect(Api(stack.url), "synced") as connection:
        listed = connection.run("cd /workspace/app && ls -A").stdout.decode().split()
    assert listed == ["main.py"]  # not the ignored log, not the upload-only-here file


@pytest.mark.usefixtures("user")
def test_gitignore_false_syncs_what_gitignore_names(
    stack: Stack, project: Path, devspace: Callable[..., Result]
) -> None:
    (project / "devspace.yaml").write_text(
        "name: unignored\nimage: devspace.test/shell\ncommand: [sleep, infinity]\n"
        "sync:\n  local: .\n  remote: /workspace\n  gitignore: false\n"
    )
    (project / ".gitignore").write_text("build/\n")
    (project / "build").mkdir()
    (project / "build" / "out.txt").write_text("generated\n")
    assert devspace("up", "-d").code == 0

    synced = devspace("sync", "--once")
    assert synced.code == 0, synced.err
    with connect(Api(stack.url), "unignored") as connection:
        found = connection.run("cat /workspace/build/out.txt").stdout
    assert found == b"generated\n", synced.out
