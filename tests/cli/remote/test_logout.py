"""`devspace logout` also deletes the SSH key, certificate and gateway pin kept for that server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devspace.api import Api
from devspace.certificates import GATEWAY_PINS, ensure_identity

from .conftest import Bed, Result, sign_in

pytestmark = [pytest.mark.kube, pytest.mark.node]


def test_logout_deletes_the_ssh_key_and_certificate(
    bed: Bed, devspace: Callable[..., Result]
) -> None:
    identity = ensure_identity(Api(bed.url))
    assert identity.private_key.exists()
    assert identity.certificate.exists()
    pins = identity.private_key.with_name(GATEWAY_PINS)  # as `devspace proxy` leaves it
    pins.write_text("devspace-gateway ssh-ed25519 AAAA\n")
    try:
        result = devspace("logout")
        assert result.code == 0, result.err
        assert not identity.private_key.exists()
        assert not identity.certificate.exists()
        assert not pins.exists()
        # Signed out, the remote commands say what to do instead of failing obscurely.
        after = devspace("exec", "--server", bed.url, "work", "--", "true")
        assert after.code == 3
        assert "devspace login" in after.err
    finally:
        sign_in(bed.live.app, bed.url, bed.alice, "alice")
