"""Sealing the sidecars' host private keys (`host_key_sealing.py`): pure, no database."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devspace_server.ca import new_host_key
from devspace_server.host_key_sealing import (
    HostKeySealer,
    UnsealError,
    key_id,
    new_keys_file_content,
    parse_keys,
)

OLD, NEW, STRANGER = (parse_keys(new_keys_file_content().decode())[0] for _ in range(3))
SPACE, OTHER_SPACE = "0123456789abcdef", "fedcba9876543210"
PRIVATE = new_host_key().private_openssh


def test_a_sealed_key_opens_for_its_space_and_shows_nothing_of_the_key() -> None:
    sealer = HostKeySealer([NEW])
    sealed = sealer.seal(SPACE, PRIVATE)
    assert sealed.startswith(f"sealed:v1:{key_id(NEW)}:")
    assert "PRIVATE" not in sealed
    # No line of the key's base64 body survives into the sealed value.
    assert not any(line in sealed for line in PRIVATE.splitlines()[1:-1])
    assert sealer.open(SPACE, sealed) == PRIVATE
    # A fresh nonce each time: sealing the same key twice never gives the same value.
    assert sealer.seal(SPACE, PRIVATE) != sealed


def test_a_sealed_key_moved_to_another_space_does_not_open() -> None:
    sealer = HostKeySealer([NEW])
    with pytest.raises(UnsealError, match="copied from another space"):
        sealer.open(OTHER_SPACE, sealer.seal(SPACE, PRIVATE))


def test_rotation_opens_with_an_older_key_and_seals_with_the_first() -> None:
    sealed_before = HostKeySealer([OLD]).seal(SPACE, PRIVATE)
    rotated = HostKeySealer([NEW, OLD])
    assert rotated.open(SPACE, sealed_before) == PRIVATE
    assert rotated.needs_resealing(sealed_before)
    resealed = rotated.seal(SPACE, PRIVATE)
    assert not rotated.needs_resealing(resealed)
    assert HostKeySealer([NEW]).open(SPACE, resealed) == PRIVATE


def test_a_key_that_is_not_configured_is_named_with_what_to_do() -> None:
    sealed = HostKeySealer([STRANGER]).seal(SPACE, PRIVATE)
    with pytest.raises(UnsealError) as caught:
        HostKeySealer([NEW, OLD]).open(SPACE, sealed)
    message = str(caught.value)
    assert f"sealed with encryption key {key_id(STRANGER)}" in message
    assert f"({key_id(NEW)}, {key_id(OLD)})" in message
    assert "add that key back to DEVSPACE_HOST_KEY_ENCRYPTION_KEYS" in message


def test_plain_keys_from_before_encryption_are_read_as_they_are_and_need_sealing() -> None:
    sealer = HostKeySealer([NEW])
    assert sealer.open(SPACE, PRIVATE) == PRIVATE
    assert sealer.needs_resealing(PRIVATE)


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("sealed:v2:00000000:AAAA", "format 'v2', which this server does not know"),
        ("sealed:v1:{id}:", "does not decrypt"),
        ("sealed:v1:{id}:!!not base64!!", "does not decrypt"),
        ("sealed:v1:{id}:" + "A" * 60, "does not decrypt"),
    ],
)
def test_damaged_values_are_refused_with_a_reason(stored: str, why: str) -> None:
    with pytest.raises(UnsealError, match=why):
        HostKeySealer([NEW]).open(SPACE, stored.format(id=key_id(NEW)))


@given(st.text(max_size=300), st.text(min_size=1, max_size=40))
def test_anything_sealed_opens_again_and_only_for_its_space(plain: str, space: str) -> None:
    sealer = HostKeySealer([NEW, OLD])
    sealed = sealer.seal(space, plain)
    assert sealer.open(space, sealed) == plain
    with pytest.raises(UnsealError):
        sealer.open(space + "x", sealed)


def test_key_lists_are_parsed_current_first_in_either_base64_alphabet() -> None:
    urlsafe = base64.urlsafe_b64encode(OLD).decode().rstrip("=")
    text = f"# rotated today\n{base64.b64encode(NEW).decode()}\n\n{urlsafe}\n{urlsafe}\n"
    assert parse_keys(text) == (NEW, OLD)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "holds no key"),
        ("# only a comment\n", "holds no key"),
        ("c2hvcnQ=", "line 1 is not a base64 key of 32 bytes"),
        (base64.b64encode(NEW).decode() + "\nnot base64 at all!", "line 2 is not a base64 key"),
        (base64.b64encode(bytes(32)).decode(), "line 1 looks like a placeholder"),
    ],
)
def test_bad_key_lists_say_which_line_and_how_to_make_a_key(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_keys(text)
    assert "os.urandom(32)" in str(caught.value)
