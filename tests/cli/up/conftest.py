"""Fixtures for `devspace init`, `up` and `down`, run in-process against the whole stack.

- ``stack`` (module): ``stack.Stack`` on the test bed: the server over real HTTP with a real
  reconciler (as the chart's least-privilege ServiceAccount), the SSH gateway, spaces with the
  real sidecar image.
- ``home``, ``devspace``, ``spawn``: the CLI's own directories, the in-process runner and the
  separate-process runner, from tests/cli/commands/conftest.py.
- ``user``: a new person on ``stack``, logged in for the CLI (tokens stored in ``home``);
  returns the username.
- ``project``: an empty project folder, made the current directory.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from stack import Stack

from cli.commands.conftest import CLI, Result, devspace, home, spawn
from testbed.cluster import ControlPlane, ExistingCluster
from testbed.node import TestNode

__all__ = ["CLI", "Result", "devspace", "home", "spawn"]


@pytest.fixture(scope="module")
def stack(
    kube: client.ApiClient,
    control_plane: ControlPlane | ExistingCluster,
    test_node: TestNode,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with Stack.start(
        kube=kube,
        control_plane=control_plane,
        test_node=test_node,
        directory=tmp_path_factory.mktemp("stack"),
    ) as running:
        yield running


@pytest.fixture
def user(stack: Stack, home: Path) -> str:
    name = f"u{uuid.uuid4().hex[:8]}"
    stack.add_user(name)
    stack.log_in(name)
    return name


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder
