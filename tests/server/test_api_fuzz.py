"""A schema-driven fuzz of the API: schemathesis reads `/api/v1/openapi.json` and sends what
it describes (and what it does not), as an admin holding every scope.

Every answer must be no 5xx, carry a status the document lists for the operation, and have
a body that matches the documented schema: the JSON model for a success, problem+json
(RFC 9457) for an error. Without the token each operation must answer 401, and a method
it does not have 405. A failure names the route and gives a curl command to replay it.
The example count per operation and mode is fixed (`DEVSPACE_FUZZ_EXAMPLES`), so the
test's time is bounded.

schemathesis's own pytest entry point for a schema from a fixture (`from_fixture`) fails on
pytest 9.2 (it sets `node._nodeid`, which is gone), so the test drives Hypothesis itself:
one subtest per operation and mode, positive (data that fits the schema) and negative.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import schemathesis
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode, checks
from schemathesis.schemas import APIOperation

from devspace_server.auth import passwords
from devspace_server.models import Role, TokenKind, User

from .oauth_flows import bearer, make_token

EXAMPLES = int(os.environ.get("DEVSPACE_FUZZ_EXAMPLES", "60"))


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about the API, not the hash."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def settings(settings: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The usual settings, with an SSH CA key and a gateway so that the SSH routes work."""
    ca = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ssh-ca"
    path.write_bytes(
        ca.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    gateway = tmp_path / "gateway-host-keys.pub"
    gateway.write_bytes(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return settings | {
        "DEVSPACE_SSH_CA_KEY_FILE": str(path),
        "DEVSPACE_GATEWAY_ADDRESS": "ssh.devspace.test:2222",
        "DEVSPACE_GATEWAY_HOST_KEYS_FILE": str(gateway),
    }


@pytest.fixture
def admin_token(app: Flask, make_user: Callable[..., User]) -> str:
    """A token with every scope, of an admin: an OAuth access token, as `devspace login`
    gets, so that the fuzz cannot revoke it through `DELETE /api/v1/tokens/{id}`."""
    root = make_user("root", role=Role.ADMIN)
    return make_token(app, root, "spaces ssh admin", kind=TokenKind.ACCESS)


@pytest.fixture
def bob(app: Flask, make_user: Callable[..., User]) -> str:
    """The id of a user with a token, for the admin routes to find."""
    user = make_user("bob")
    make_token(app, user)
    return user.id


# What every answer is held to. Left out: schemathesis's checks that valid data is accepted
# and invalid data refused. Request models check more than JSON Schema can say (a real SSH
# key, a Kubernetes quantity), and pydantic takes `true` or "5" for an integer, so those
# would fail on designed behaviour; see the module docstring.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.ignored_auth,
    checks.unsupported_method,
]


def can_be_invalid(operation: APIOperation) -> bool:
    """False if nothing sent to `operation` can break its schema: it takes no body and no
    parameters but strings in the path (any string is one)."""
    return bool(operation.body) or any(
        p.location != "path" or p.definition.get("schema", {}).get("type") != "string"
        for p in operation.iter_parameters()
    )


def fuzz(operation: APIOperation, mode: GenerationMode, user_id: str) -> set[int]:
    """Send `operation` examples of `mode`; returns the statuses it answered with.

    Where the path names a user, half the examples name `user_id`, who exists: a random
    id only ever reaches the 404.
    """
    cases = operation.as_strategy(generation_mode=mode)
    if any(p.location == "path" and p.name == "user_id" for p in operation.iter_parameters()):
        existing = {"user_id": user_id}
        cases = cases | operation.as_strategy(generation_mode=mode, path_parameters=existing)
    statuses: set[int] = set()

    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        # Every operation's `check` has the same name, so saved examples would be replayed
        # into the wrong operation; a failure prints its seed instead.
        database=None,
        # Examples are requests to a real database: slow for Hypothesis, and that is fine.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=cases)
    def check(case: schemathesis.Case) -> None:
        statuses.add(case.call_and_validate(checks=CHECKS).status_code)

    check()
    return statuses


def test_the_api_answers_as_documented(
    app: Flask, admin_token: str, bob: str, subtests: pytest.Subtests
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    # Every request carries the admin's token; the fuzz varies everything else.
    schema.config.update(headers=bearer(admin_token))
    schema.config.generation.update(with_security_parameters=False)
    for result in schema.get_all_operations():
        operation = result.ok()
        if "test" in (operation.tags or []):
            continue  # tests/server/things.py, which fails on purpose
        modes = GenerationMode if can_be_invalid(operation) else [GenerationMode.POSITIVE]
        for mode in modes:
            with subtests.test(msg=f"{operation.label} {mode}"):
                statuses = fuzz(operation, mode, bob)
                # The token got past authentication: the examples reached the operation.
                assert statuses - {401, 403}, statuses


TOO_BIG = str(2**64)
# What the fuzz found once, each a 500; kept so that they stay fixed whatever it tries next.
FOUND: list[tuple[str, str, dict[str, object]]] = [
    ("GET", f"/api/v1/admin/users?offset={TOO_BIG}", {}),
    ("GET", f"/api/v1/admin/audit?before={TOO_BIG}", {}),
    ("GET", "/api/v1/admin/audit?target=%00", {}),
    ("GET", "/api/v1/admin/audit?actor=a%00b", {}),
    ("GET", "/api/v1/admin/audit?action=%00", {}),
    ("DELETE", f"/api/v1/tokens/{TOO_BIG}", {}),
    ("GET", "/api/v1/admin/users/%00", {}),
    ("PATCH", "/api/v1/admin/users/%00", {}),
    ("GET", "/api/v1/admin/users/%00/tokens", {}),
    ("DELETE", "/api/v1/admin/users/%00/tokens", {}),
    ("DELETE", f"/api/v1/admin/users/x/tokens/{TOO_BIG}", {}),
    ("DELETE", "/api/v1/admin/users/%00/tokens/1", {}),
]


def test_what_the_fuzz_found_is_refused_not_a_crash(
    client: FlaskClient, admin_token: str, bob: str, subtests: pytest.Subtests
) -> None:
    for method, path, body in FOUND:
        with subtests.test(msg=f"{method} {path} {body}"):
            url = path.format(bob=bob)
            response = client.open(url, method=method, headers=bearer(admin_token), json=body)
            assert response.status_code in {404, 422}, response.get_data(as_text=True)
            assert response.mimetype == "application/problem+json"
