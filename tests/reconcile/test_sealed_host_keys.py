"""Sealed host keys through a real reconcile: `devspace-server reconcile --once` in its own
process, mid-rotation, over a database holding a row sealed with the old key, a plain row from
before encryption, and a row sealed with a key it was never given."""

from __future__ import annotations

import base64
import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flask import Flask
from kubernetes import client
from sqlalchemy import text

from devspace_server.ca import fingerprint, new_host_key
from devspace_server.context import state
from devspace_server.host_key_sealing import HostKeySealer, key_id, new_keys_file_content
from devspace_server.kube.secrets import HOST_KEY_FILE
from devspace_server.kube.spec import HOST_KEY_SECRET, ClusterSettings
from devspace_server.models import Role
from reconcile.spaceapp import caller, reconciler_environment

pytestmark = [pytest.mark.kube]
SERVER = Path(sys.executable).with_name("devspace-server")
SPACE = {"image": "devspace.test/shell", "storage": "64Mi", "stopped": True}
OLD, NEW, STRANGER = (new_keys_file_content().decode().strip() for _ in range(3))


def _key(line: str) -> bytes:
    return base64.b64decode(line)


@pytest.fixture
def app(app: Flask) -> Flask:
    """The reconcile tests' app (conftest.py), whose API seals with the old key, as it did
    before the rotation."""
    with app.app_context():
        found = state()
        found.config = dataclasses.replace(found.config, host_key_sealer=HostKeySealer([_key(OLD)]))
    return app


def _column(app: Flask, space_id: str, value: str | None = None) -> str:
    """The raw host key column of `space_id`, after writing `value` to it if given."""
    with app.app_context(), state().engine.begin() as connection:
        if value is not None:
            connection.execute(
                text("UPDATE spaces SET host_private_key = :value WHERE id = :id"),
                {"value": value, "id": space_id},
            )
        stored: str = connection.execute(
            text("SELECT host_private_key FROM spaces WHERE id = :id"), {"id": space_id}
        ).scalar_one()
        return stored


@pytest.fixture
def reconcile_once(
    app: Flask,
    settings: ClusterSettings,
    ssh_ca: Path,
    reconciler_kubeconfig: Path,
    reconciler_namespace: str,
) -> Callable[[], subprocess.CompletedProcess[str]]:
    """Runs `devspace-server reconcile --once` mid-rotation: the new key first, the old one
    still there to open older rows."""
    env = reconciler_environment(app, settings, reconciler_namespace)
    del env["DEVSPACE_HOST_KEY_ENCRYPTION_KEYS_FILE"]  # the app's own key: not this rotation's
    env |= {
        "DEVSPACE_SSH_CA_PUBLIC_KEYS": ssh_ca.with_suffix(".pub").read_text(),
        "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS": f"{NEW}\n{OLD}\n",
    }
    argv = [str(SERVER), "reconcile", "--once", "--kubeconfig", str(reconciler_kubeconfig)]
    return lambda: subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_rotation_reseals_old_and_plain_rows_and_one_unreadable_row_stops_only_its_space(
    app: Flask,
    reconcile_once: Callable[[], subprocess.CompletedProcess[str]],
    kube: client.ApiClient,
) -> None:
    alice = caller(app, app.test_client(), "alice", Role.USER, "spaces")
    # The default quota allows three spaces: one sealed with the old key, one plain, one bad.
    made = {n: alice("POST", "/api/v1/spaces", json={"name": n, **SPACE}) for n in ("old", "plain")}
    bad = alice("POST", "/api/v1/spaces", json={"name": "bad", **SPACE})["id"]
    # A row from before encryption: the plain key, which the API still publishes.
    plain_id = made["plain"]["id"]
    _column(app, plain_id, HostKeySealer([_key(OLD)]).open(plain_id, _column(app, plain_id)))
    # A row sealed with a key this reconciler is not given (a rotation that dropped it).
    sealed_elsewhere = HostKeySealer([_key(STRANGER)]).seal(bad, new_host_key().private_openssh)
    _column(app, bad, sealed_elsewhere)

    done = reconcile_once()

    # The unreadable space fails alone, with a message that says which and what to do ...
    assert done.returncode == 1, done.stderr
    assert "reconciled 3 spaces in" in done.stderr
    assert f"1 failed ({bad})" in done.stderr
    assert (
        f"space {bad} cannot be reconciled: its host key was sealed with encryption key "
        f"{key_id(_key(STRANGER))}, which is not among the configured keys"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    shown = alice("GET", "/api/v1/spaces/bad")
    assert shown["phase"] == "error"
    assert "add that key back to DEVSPACE_HOST_KEY_ENCRYPTION_KEYS" in shown["reason"]
    assert _column(app, bad) == sealed_elsewhere
    # ... and every other space gets the host key whose fingerprint the API published,
    # while its row is now sealed with the new key and holds nothing in the clear.
    core = client.CoreV1Api(kube)
    for space in made.values():
        secret = core.read_namespaced_secret(HOST_KEY_SECRET, space["namespace"])
        private = base64.b64decode(secret.data[HOST_KEY_FILE])
        public = load_ssh_private_key(private, None).public_key()
        assert fingerprint(public) == space["host_key"]["fingerprint"]  # type: ignore[arg-type]
        stored = _column(app, space["id"])
        assert stored.startswith(f"sealed:v1:{key_id(_key(NEW))}:")
        assert "PRIVATE KEY" not in stored
