"""`devspace spaces` and `devspace status` against the real API: a space's whole life, the
default space, JSON output, and how refusals read.

No reconciler runs, so a new space stays `provisioning`: the API's answers are what is tested.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from devspace.credentials import Credentials

from .conftest import SPACES, Result

Devspace = Callable[..., Result]


def test_a_space_from_create_to_delete(signed_in: Credentials, devspace: Devspace) -> None:
    listed = devspace("spaces", "list")
    assert (listed.code, listed.err) == (0, "")
    assert "No spaces yet" in listed.out

    created = devspace("spaces", "create", "web", "--image", "python:3.12")
    assert created.code == 0, created.err
    assert "Created space 'web'; it is provisioning" in created.err
    assert "name:       web" in created.out

    listed = devspace("spaces", "-o", "json")
    assert listed.code == 0, listed.err
    [space] = json.loads(listed.out)
    assert (space["name"], space["image"], space["phase"]) == ("web", "python:3.12", "provisioning")

    # --server may come after the verb as well as before it.
    shown = devspace("spaces", "show", "web", "--output", "json", "--server", signed_in.server)
    assert json.loads(shown.out)["host_key"]["fingerprint"].startswith("SHA256:")

    stopped = devspace("spaces", "stop", "web")
    assert stopped.code == 0, stopped.err
    assert json.loads(devspace("spaces", "show", "web", "-o", "json").out)["stopped"] is True
    started = devspace("spaces", "start", "web")
    assert started.code == 0, started.err
    assert json.loads(devspace("spaces", "show", "web", "-o", "json").out)["stopped"] is False

    deleted = devspace("spaces", "delete", "web", "--yes")
    assert deleted.code == 0, deleted.err
    assert "Deleted space 'web'" in deleted.err
    assert json.loads(devspace("spaces", "list", "-o", "json").out) == []


def test_the_default_space_and_status(signed_in: Credentials, devspace: Devspace) -> None:
    assert devspace("spaces", "create", "api", "--image", "debian:13").code == 0
    no_default = devspace("spaces", "show")
    assert no_default.code == 2
    assert "devspace spaces use NAME" in no_default.err

    quota_only = devspace("status")
    assert (quota_only.code, quota_only.out) == (0, f"alice: 1 of {SPACES} spaces\n")

    used = devspace("spaces", "use", "api")
    assert used.code == 0, used.err
    assert "* api" in devspace("spaces").out
    status = devspace("status")
    assert status.code == 0, status.err
    assert "space:   api" in status.out
    assert "phase:   provisioning" in status.out
    assert f"alice: 1 of {SPACES} spaces" in status.out

    as_json = json.loads(devspace("status", "-o", "json").out)
    assert as_json["space"]["name"] == "api"
    assert as_json["quota"]["usage"]["spaces"] == 1
    assert devspace("spaces", "stop").code == 0  # the default space

    missing = devspace("spaces", "use", "nope")
    assert missing.code == 4
    assert missing.err.strip() == "devspace: error: You have no space named 'nope'."


def test_server_refusals_are_one_line_and_exit_4(
    signed_in: Credentials, devspace: Devspace
) -> None:
    for name in ("a1", "a2"):
        assert devspace("spaces", "create", name, "--image", "debian:13").code == 0
    over = devspace("spaces", "create", "a3", "--image", "debian:13")
    assert over.code == 4
    assert over.err == (
        "devspace: error: You have 2 spaces and your quota allows 2: delete one, or ask an "
        "admin to raise your quota.\n"
    )
    taken = devspace("spaces", "create", "a1", "--image", "debian:13")
    assert (taken.code, taken.err.count("\n")) == (4, 1)
    assert "already have a space named 'a1'" in taken.err
    invalid = devspace("spaces", "create", "Bad_Name", "--image", "debian:13")
    assert invalid.code == 4
    assert "name:" in invalid.err
    assert "Traceback" not in over.err + taken.err + invalid.err


def test_deleting_without_a_terminal_needs_yes(signed_in: Credentials, devspace: Devspace) -> None:
    assert devspace("spaces", "create", "keep", "--image", "debian:13").code == 0
    refused = devspace("spaces", "delete", "keep")
    assert refused.code == 2
    assert "--yes" in refused.err
    assert "keep" in devspace("spaces").out
