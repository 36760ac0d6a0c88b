"""The sidecars' host private keys at rest: sealed in the database, opened only by the
reconciler's store, re-sealed on rotation, and plain rows from before sealed lazily.

Every check of what is stored reads the raw column with SQL, as a database dump would."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flask import Flask
from sqlalchemy import text

from devspace_server.ca import fingerprint, new_host_key
from devspace_server.context import state
from devspace_server.host_key_sealing import (
    HostKeySealer,
    key_id,
    new_keys_file_content,
    parse_keys,
)
from devspace_server.quotas import QuotaValues
from devspace_server.reconcile.dbstore import DatabaseSpaceStore
from devspace_server.reconcile.errors import HostKeyUnreadable

from ..conftest import HOST_KEY_ENCRYPTION_KEY
from .helpers import Caller, new_space

(CONFIGURED_KEY,) = parse_keys(HOST_KEY_ENCRYPTION_KEY)
NEXT_KEY = parse_keys(new_keys_file_content().decode())[0]


def raw_column(app: Flask, space_id: str) -> str:
    with app.app_context(), state().engine.connect() as connection:
        value: str = connection.execute(
            text("SELECT host_private_key FROM spaces WHERE id = :id"), {"id": space_id}
        ).scalar_one()
        return value


def write_column(app: Flask, space_id: str, value: str) -> None:
    with app.app_context(), state().engine.begin() as connection:
        connection.execute(
            text("UPDATE spaces SET host_private_key = :value WHERE id = :id"),
            {"value": value, "id": space_id},
        )


def configured_keys(app: Flask) -> HostKeySealer:
    with app.app_context():
        sealer = state().config.host_key_sealer
    assert sealer is not None, "tests/server/conftest.py configures a key"
    return sealer


def store_with(app: Flask, sealer: HostKeySealer) -> DatabaseSpaceStore:
    with app.app_context():
        sessions = state().sessions
    return DatabaseSpaceStore(
        sessions, configured_quota=QuotaValues(), ca_public_keys=tuple, host_key_sealer=sealer
    )


def fingerprint_of(private_openssh: str) -> str:
    key = load_ssh_private_key(private_openssh.encode(), None)
    return fingerprint(key.public_key())  # type: ignore[arg-type]


def test_the_column_never_holds_the_key_in_clear_yet_the_store_gives_the_published_one(
    app: Flask, as_alice: Caller
) -> None:
    created = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()
    stored = raw_column(app, created["id"])
    assert stored.startswith(f"sealed:v1:{configured_keys(app).current_key_id}:")
    assert "PRIVATE KEY" not in stored
    spec = store_with(app, configured_keys(app)).desired_space(created["id"])
    assert spec is not None
    assert fingerprint_of(spec.host_private_key) == created["host_key"]["fingerprint"]
    # The store read it, and it was already sealed with the current key: left alone.
    assert raw_column(app, created["id"]) == stored


def test_rotation_opens_old_rows_and_reseals_them_with_the_new_key(
    app: Flask, as_alice: Caller
) -> None:
    created = as_alice("POST", "/api/v1/spaces", json=new_space()).get_json()
    assert configured_keys(app).current_key_id == key_id(CONFIGURED_KEY)
    store = store_with(app, HostKeySealer([NEXT_KEY, CONFIGURED_KEY]))
    # The full resync's read re-seals, with the first key, what the old key sealed.
    (spec,) = store.desired_spaces()
    stored = raw_column(app, created["id"])
    assert stored.startswith(f"sealed:v1:{key_id(NEXT_KEY)}:")
    assert fingerprint_of(spec.host_private_key) == created["host_key"]["fingerprint"]
    # Once re-sealed, the old key can go.
    alone = store_with(app, HostKeySealer([NEXT_KEY])).desired_space(created["id"])
    assert alone is not None
    assert alone.host_private_key == spec.host_private_key
    assert store.reseal_host_keys() == 0


def test_a_row_moved_to_another_space_does_not_open(app: Flask, as_alice: Caller) -> None:
    first = as_alice("POST", "/api/v1/spaces", json=new_space("first")).get_json()["id"]
    second = as_alice("POST", "/api/v1/spaces", json=new_space("second")).get_json()["id"]
    write_column(app, second, raw_column(app, first))
    store = store_with(app, configured_keys(app))
    with pytest.raises(HostKeyUnreadable, match="copied from another space") as caught:
        store.desired_space(second)
    assert str(caught.value).startswith(f"space {second} cannot be reconciled: ")
    assert store.desired_space(first) is not None


def test_a_wrong_key_is_a_clear_error_for_that_space_alone(app: Flask, as_alice: Caller) -> None:
    bad = as_alice("POST", "/api/v1/spaces", json=new_space("bad")).get_json()["id"]
    good = as_alice("POST", "/api/v1/spaces", json=new_space("good")).get_json()["id"]
    stranger = parse_keys(new_keys_file_content().decode())[0]
    sealed_elsewhere = HostKeySealer([stranger]).seal(bad, new_host_key().private_openssh)
    write_column(app, bad, sealed_elsewhere)
    store = store_with(app, configured_keys(app))
    # The full list still names it (so its namespace is never taken for an orphan) ...
    assert {s.space_id for s in store.desired_spaces()} == {bad, good}
    assert raw_column(app, bad) == sealed_elsewhere  # ... and nothing overwrote it.
    with pytest.raises(HostKeyUnreadable) as caught:
        store.desired_space(bad)
    message = str(caught.value)
    assert message.startswith(f"space {bad} cannot be reconciled: ")
    assert f"sealed with encryption key {key_id(stranger)}" in message
    assert "add that key back" in message
    assert store.desired_space(good) is not None


def test_plain_rows_from_before_are_read_and_sealed_lazily_deleted_ones_too(
    app: Flask, as_alice: Caller
) -> None:
    live = as_alice("POST", "/api/v1/spaces", json=new_space("live")).get_json()
    gone = as_alice("POST", "/api/v1/spaces", json=new_space("gone")).get_json()["id"]
    as_alice("DELETE", "/api/v1/spaces/gone")
    plain = new_host_key()
    write_column(app, live["id"], plain.private_openssh)
    write_column(app, gone, new_host_key().private_openssh)

    # A plain row is read as it is until the resync seals it.
    store = store_with(app, configured_keys(app))
    spec = store.desired_space(live["id"])
    assert spec is not None
    assert spec.host_private_key == plain.private_openssh
    assert raw_column(app, live["id"]) == plain.private_openssh

    assert store.reseal_host_keys() == 2
    for space_id in (live["id"], gone):
        assert raw_column(app, space_id).startswith("sealed:v1:")
        assert "PRIVATE KEY" not in raw_column(app, space_id)
    spec = store.desired_space(live["id"])
    assert spec is not None
    assert spec.host_private_key == plain.private_openssh
