"""The user story as one test, with every real component (issue 9).

The Kubernetes control plane and the test node; the devspace server over HTTP with its
reconciler and the SSH gateway (tests/stack.py); a real OpenID provider (npm's
`oidc-provider`) as the upstream sign-in; headless Chromium as both people's browser; the
devspace CLI as processes of their own, `up` on a real terminal (pexpect).

1. An admin signs in (`devspace login --scope admin`, their local account's password).
2. A user signs in (`devspace login`, through the upstream provider); their devspace account
   is made at that first sign-in, so it comes before the admin can set its quota.
3. The admin sets the user's quota through the admin API; the user's `devspace status` shows it.
4. The user runs `devspace init` and `devspace up` in a copy of examples/webapp, starts the app
   in the pod's shell; the forwarded port serves it, a local edit is served, a file made in the
   pod's shell arrives locally. Leaving the shell ends `up`.
5. `devspace down`; the admin lowers the quota; the user's next space and next pod are refused
   with messages that say it is the quota.
6. `devspace spaces delete`: nothing of the user's is left in the cluster.

It asserts what the people would see: exit codes, messages, files, HTTP answers, and (as an
admin with kubectl would) what the cluster still holds. A failure names the step it broke at.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pexpect
import pytest
import requests
from kubernetes import client
from playwright.sync_api import Browser, Page
from server.conftest import ACCOUNTS, CLIENT_SECRET, IDP_PASSWORD, NAME, TITLE
from server.upstream_pages import allow, sign_in_and_allow, through_provider
from ssh.gateway_bed import free_local_port
from stack import PASSWORD, Stack

from devspace_server.models import Role
from testbed.cluster import ControlPlane, ExistingCluster
from testbed.eventually import eventually
from testbed.node import TestNode
from testbed.oidc import Client, OidcProvider

from .story import Person, leftovers, log_in, made_for_a_space, step

pytestmark = [pytest.mark.kube, pytest.mark.node]

WEBAPP = Path(__file__).resolve().parents[2] / "examples" / "webapp"
IMAGE = "devspace.test/shell"  # the test node runs only its own images; this one has Python 3
ADMIN = "ops-admin"
USER = "alice"  # at the upstream provider (tests/server/conftest.py's ACCOUNTS)


@pytest.fixture
def stack(
    kube: client.ApiClient,
    control_plane: ControlPlane | ExistingCluster,
    test_node: TestNode,
    tmp_path: Path,
) -> Iterator[Stack]:
    """The stack, signing people in through a real OpenID provider (registered with the
    server's callback address, which is known once the stack listens)."""
    with ExitStack() as cleanup:

        def upstream(url: str) -> dict[str, str]:
            callback = f"{url}/login/upstream/{NAME}/callback"
            idp = OidcProvider.start(
                tmp_path, [Client("devspace", CLIENT_SECRET, (callback,))], [ACCOUNTS[USER]]
            )
            cleanup.callback(idp.stop)
            prefix = f"DEVSPACE_UPSTREAM_{NAME.upper()}"
            return {
                "DEVSPACE_UPSTREAM_PROVIDERS": NAME,
                f"{prefix}_TITLE": TITLE,
                f"{prefix}_DISCOVERY_URL": idp.discovery_url,
                f"{prefix}_CLIENT_ID": "devspace",
                f"{prefix}_CLIENT_SECRET": CLIENT_SECRET,
                f"{prefix}_SCOPES": "openid email profile",
            }

        yield cleanup.enter_context(
            Stack.start(
                kube=kube,
                control_plane=control_plane,
                test_node=test_node,
                directory=tmp_path,
                environment=upstream,
            )
        )


class AdminApi:
    """The admin's calls to the web API over HTTP, with the token their login stored."""

    def __init__(self, server: str, token: str) -> None:
        self.server = server
        self.headers = {"Authorization": f"Bearer {token}"}

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.server}/api/v1{path}"
        response = requests.request(method, url, headers=self.headers, timeout=10, **kwargs)
        assert response.ok, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def user_id(self, username: str) -> str:
        """The id of `username`, from the admin's list of users."""
        users = self("GET", "/admin/users", params={"limit": 200})["items"]
        found = [u["id"] for u in users if u["username"] == username]
        assert found, f"{username} is not among the users: {[u['username'] for u in users]}"
        return str(found[0])


def served(port: int) -> str:
    """What the app answers on the forwarded port, or "" while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def test_the_user_story(
    stack: Stack, browser: Browser, kube: client.ApiClient, tmp_path: Path
) -> None:
    admin = Person(ADMIN, tmp_path / "admin-home")
    user = Person(USER, tmp_path / "user-home")
    project = tmp_path / "webapp"
    project.mkdir()
    for name in ("app.py", "index.html"):
        shutil.copy(WEBAPP / name, project / name)
    port = free_local_port()

    with step("1. the admin signs in with devspace login (local account, admin scope)"):
        # As `devspace-server create-admin` makes the first admin.
        stack.add_user(ADMIN, role=Role.ADMIN)
        said = log_in(
            admin,
            browser,
            stack.url,
            lambda page: sign_in_and_allow(page, ADMIN, PASSWORD),
            "--scope",
            "admin",
        )
        assert f"Logged in to {stack.url} as {ADMIN} (scopes: admin;" in said
        api = AdminApi(stack.url, admin.access_token(stack.url))

    with step("2. the user signs in with devspace login, through the upstream provider"):

        def at_the_provider(page: Page) -> None:
            through_provider(page, stack.url, TITLE, USER, IDP_PASSWORD)
            allow(page)

        said = log_in(user, browser, stack.url, at_the_provider)
        assert f"Logged in to {stack.url} as {USER} (scopes: spaces ssh;" in said

    with step("3. the admin sets the user's quota; the user sees it"):
        user_id = api.user_id(USER)
        quota = {"spaces": 2, "requests_memory": "2Gi"}
        set_to = api("PUT", f"/admin/users/{user_id}/quota", json=quota)
        assert set_to["effective"]["spaces"] == 2
        status = user.run("status")
        assert status.code == 0, status.err
        assert f"{USER}: 0 of 2 spaces" in status.out

    with step("4a. devspace init writes the project's devspace.yaml"):
        init = user.run("init", "--image", IMAGE, "--port", f"{port}:8080", cwd=project)
        assert init.code == 0, init.err
        assert "Edit it, then run `devspace up`." in init.err
        written = (project / "devspace.yaml").read_text()
        assert "name: webapp" in written  # the folder's name
        assert f"- {{port: 8080, local: {port}}}" in written

    log = tmp_path / "up-terminal.log"

    def terminal() -> str:
        return f"the terminal of `devspace up` showed:\n{log.read_text(errors='replace')}"

    with user.terminal("up", cwd=project, log=log) as up:
        with step("4b. devspace up opens a shell in the pod", terminal):
            up.expect(r"\$ ", timeout=120)

        with step(
            "4c. the app, started in the pod's shell, answers on the forwarded port", terminal
        ):
            # The first sync pass may still be bringing app.py when the shell opens.
            up.sendline(
                "until [ -f app.py ]; do sleep 0.2; done; "
                "python3 app.py 8080 </dev/null >/dev/null 2>&1 &"
            )
            eventually(lambda: "Hello from a dev pod" in served(port), what="the app", timeout=60)

        with step("4d. a local edit is served by the pod", terminal):
            index = project / "index.html"
            index.write_text(index.read_text().replace("Hello from a dev pod", "Edited here"))
            eventually(lambda: "Edited here" in served(port), what="the edit served", timeout=30)

        with step("4e. a file made in the pod's shell arrives here", terminal):
            # Arithmetic, so that the echo of the typed line is not the file's content.
            up.sendline("echo made in the pod $((6*7)) > made.txt")
            made = project / "made.txt"
            eventually(
                lambda: made.exists() and made.read_text() == "made in the pod 42\n",
                what="the pod's file arriving",
                timeout=30,
            )

        with step("4f. leaving the shell ends devspace up, and the port with it", terminal):
            up.sendline("exit")
            up.expect(pexpect.EOF, timeout=60)
            up.close()
            assert up.exitstatus == 0
            assert "Traceback" not in log.read_text(errors="replace")
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()

    with step("5a. devspace down stops the pod"):
        down = user.run("down", cwd=project)
        assert down.code == 0, down.err
        shown_space = user.run("spaces", "show", "webapp", "--output", "json")
        assert json.loads(shown_space.out)["stopped"] is True, shown_space.out

    with step("5b. the admin lowers the quota; the user's next space is refused, saying why"):
        api("PUT", f"/admin/users/{user_id}/quota", json={"spaces": 1, "requests_memory": "64Mi"})
        second = user.run("spaces", "create", "second", "--image", IMAGE)
        assert second.code == 4, second.err
        assert "You have 1 space and your quota allows 1: delete one, or ask an admin" in second.err

    with step("5c. the user's next pod is refused, saying it is the quota"):
        again = user.run("up", "--detach", cwd=project)
        assert again.code == 4, again.err
        assert "Traceback" not in again.err
        # The cluster's refusal, relayed: it names the quota, and the admin's new limit.
        assert "space webapp cannot run: quota-exceeded:" in again.err
        assert "limited: requests.memory=64Mi" in again.err
        assert "ask an admin to raise your quota" in again.err

    with step("6. devspace spaces delete leaves nothing of the user's in the cluster"):
        namespaces = stack.namespaces()
        # What is looked for afterwards is there now: the search finds what it must not.
        before = {found.split()[0] for found in leftovers(kube, user_id, namespaces)}
        expected = made_for_a_space() | {"PersistentVolume"}
        assert expected <= before, f"not found before the delete: {expected - before}"
        gone = user.run("spaces", "delete", "webapp", "--yes")
        assert gone.code == 0, gone.err
        assert "Deleted space 'webapp'." in gone.err
        listed = user.run("spaces", "list")
        assert listed.code == 0, listed.err
        assert "webapp" not in listed.out
        deadline = time.monotonic() + 60
        while left := leftovers(kube, user_id, namespaces):
            assert time.monotonic() < deadline, f"still in the cluster after 60 s: {left}"
            time.sleep(0.5)
