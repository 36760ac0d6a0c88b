"""Fixtures for the spaces and quotas tests (each runs on SQLite and on PostgreSQL).

- ``as_user(user, scope)``: a `Caller` with a fresh token of `scope` for `user`.
- ``alice``, ``bob`` (users) and ``root`` (an admin).
- ``as_alice``, ``as_bob`` (scopes `spaces ssh`), ``as_admin`` (`spaces ssh admin`).
- ``cheap_hashing`` (autouse): Argon2id at its lowest cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from devspace_server.auth import passwords
from devspace_server.models import Role, User

from ..oauth_flows import bearer, make_token
from .helpers import Caller


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: these tests are about the API, not the hash."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def as_user(app: Flask, client: FlaskClient) -> Callable[[User, str], Caller]:
    """`as_user(user, scope)` gives `call(method, path, json=…)` with a token of that scope."""

    def make(user: User, scope: str = "spaces ssh") -> Caller:
        token = make_token(app, user, scope)

        def call(method: str, path: str, **kwargs: Any) -> Any:
            return client.open(path, method=method, headers=bearer(token), **kwargs)

        return call

    return make


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    return make_user("bob")


@pytest.fixture
def root(make_user: Callable[..., User]) -> User:
    return make_user("root", role=Role.ADMIN)


@pytest.fixture
def as_alice(as_user: Callable[[User, str], Caller], alice: User) -> Caller:
    return as_user(alice, "spaces ssh")


@pytest.fixture
def as_bob(as_user: Callable[[User, str], Caller], bob: User) -> Caller:
    return as_user(bob, "spaces ssh")


@pytest.fixture
def as_admin(as_user: Callable[[User, str], Caller], root: User) -> Caller:
    return as_user(root, "spaces ssh admin")
