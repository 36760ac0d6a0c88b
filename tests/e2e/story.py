"""The people of the user story and what they look at: helpers for tests/e2e/test_user_story.py.

- `Person`: someone at a terminal with the devspace CLI, in their own config and state
  folders (credentials in a file there). Every command is a process of its own, as typed.
- `log_in`: `devspace login` with the person at a headless Chromium (the browser part is a
  function of the page, so the same flow serves the upstream provider and a local account).
- `step`: names the story's step in a failure.
- `leftovers`: what the cluster still holds of a user, kind by kind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pexpect
import pytest
from cli.commands.conftest import CLI
from cli.runner import Result, read_until
from kubernetes import client
from playwright.sync_api import Browser, Page

from devspace.credentials import FileBackend, Store
from devspace_server.kube.meta import OWNER_ID
from devspace_server.kube.space import KubeObject


@contextmanager
def step(title: str, evidence: Callable[[], str] | None = None) -> Iterator[None]:
    """Run one step of the story; a failure inside says which step broke, why, and what
    `evidence()` tells (what a terminal showed, say)."""
    # Shown with a failure (or -s): the steps done, and how long each took.
    print(f"story: {title}", file=sys.stderr)
    started = time.monotonic()
    try:
        yield
    except (Exception, pytest.fail.Exception) as error:
        told = f"\n{evidence()}" if evidence else ""
        raise AssertionError(f"the story broke at: {title}\n{error}{told}") from error
    print(f"story: ... done in {time.monotonic() - started:.1f} s", file=sys.stderr)


@dataclass(frozen=True)
class Person:
    """Someone with the devspace CLI: `home` holds their config and state folders."""

    name: str
    home: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment of their terminal."""
        env = {k: v for k, v in os.environ.items() if k != "DEVSPACE_SERVER"}
        return env | {
            "DEVSPACE_CONFIG_DIR": str(self.home / "config"),
            "DEVSPACE_STATE_DIR": str(self.home / "state"),
            "DEVSPACE_CREDENTIALS": "file",
        }

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> Result:
        """`devspace *args` to the end, without a terminal; what it did."""
        done = subprocess.run(
            [*CLI, *args],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def spawn(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        """`devspace *args` started without a terminal (stdout and stderr piped)."""
        return subprocess.Popen(
            [*CLI, *args],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @contextmanager
    def terminal(self, *args: str, cwd: Path, log: Path) -> Iterator[pexpect.spawn]:
        """`devspace *args` on a terminal (a real PTY), closed (killed if need be) on exit;
        what it shows is kept in `log`."""
        with log.open("wb") as shown:
            child = pexpect.spawn(
                CLI[0],
                [*CLI[1:], *args],
                cwd=str(cwd),
                env=self.env | {"TERM": "xterm"},
                dimensions=(24, 100),
                timeout=60,
            )
            child.logfile_read = shown
            try:
                yield child
            finally:
                child.close(force=True)

    def access_token(self, server: str) -> str:
        """The API token `devspace login` stored for `server` (what a script of theirs uses)."""
        stored = Store(FileBackend(self.home / "config" / "credentials")).load(server)
        assert stored is not None, f"{self.name} is not logged in to {server}"
        return stored.access_token


def log_in(
    person: Person,
    browser: Browser,
    server: str,
    in_the_browser: Callable[[Page], None],
    *extra: str,
) -> str:
    """`devspace login --no-browser` (with `extra` arguments); the person opens the address it
    prints in a fresh browser context (no cookies; JavaScript off: the pages work without it)
    and does `in_the_browser` there, ending on devspace's consent page's Allow. Returns what
    the command said; fails if it did not exit 0."""
    login = person.spawn("login", "--server", server, "--no-browser", *extra)
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(15_000)
    try:
        address = read_until(login, r"(http://\S+/oauth/authorize\?\S+)").group(1)
        page = context.new_page()
        page.goto(address)
        in_the_browser(page)
        page.wait_for_url("http://127.0.0.1:*/callback?*")
        assert "go back to your terminal" in page.locator("p").inner_text()
        _out, said = login.communicate(timeout=60)
    finally:
        context.close()
        if login.poll() is None:
            login.kill()
            login.communicate()
    assert login.returncode == 0, said
    return said


# What the reconciler makes for a space (devspace_server/kube/space.py), and what Kubernetes
# makes from them (ReplicaSets and Pods, which carry the Deployment's labels): each listed
# across the cluster by the owner label, so nothing hides in another namespace either.
def _kinds(kube: client.ApiClient) -> dict[str, Callable[..., Any]]:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    networking, rbac = client.NetworkingV1Api(kube), client.RbacAuthorizationV1Api(kube)
    return {
        "Namespace": core.list_namespace,
        "ResourceQuota": core.list_resource_quota_for_all_namespaces,
        "LimitRange": core.list_limit_range_for_all_namespaces,
        "NetworkPolicy": networking.list_network_policy_for_all_namespaces,
        "RoleBinding": rbac.list_role_binding_for_all_namespaces,
        "Secret": core.list_secret_for_all_namespaces,
        "PersistentVolumeClaim": core.list_persistent_volume_claim_for_all_namespaces,
        "Deployment": apps.list_deployment_for_all_namespaces,
        "ReplicaSet": apps.list_replica_set_for_all_namespaces,
        "Pod": core.list_pod_for_all_namespaces,
    }


def made_for_a_space() -> set[str]:
    """The kinds the reconciler makes for every space."""
    return {cls.__name__.removeprefix("V1") for cls in get_args(KubeObject)}


def leftovers(kube: client.ApiClient, owner_id: str, namespaces: list[str]) -> list[str]:
    """`Kind namespace/name` of everything of user `owner_id` in the cluster, terminating or
    not; and each PersistentVolume bound to a claim in `namespaces` (the volumes carry no
    labels of ours: they are the storage provisioner's)."""
    kinds = _kinds(kube)
    # A kind the reconciler learns to make must be looked for here too.
    assert made_for_a_space() <= set(kinds), f"not looked for: {made_for_a_space() - set(kinds)}"
    found = []
    for kind, list_them in kinds.items():
        items = list_them(label_selector=f"{OWNER_ID}={owner_id}").items
        found += [f"{kind} {i.metadata.namespace or ''}/{i.metadata.name}" for i in items]
    for volume in client.CoreV1Api(kube).list_persistent_volume().items:
        claim = volume.spec.claim_ref if volume.spec else None
        if claim is not None and claim.namespace in namespaces:
            phase = volume.status.phase if volume.status else None
            name = volume.metadata.name if volume.metadata else "?"
            found.append(f"PersistentVolume /{name} ({phase})")
    return found
