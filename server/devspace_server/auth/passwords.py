"""Password hashing (argon2id, argon2-cffi's RFC 9106 defaults) and password rules."""

from __future__ import annotations

import contextlib
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
# Hashing cost grows with length; a cap keeps one request from burning a worker.
MAX_LENGTH = 1024

_hasher = PasswordHasher()  # argon2id; parameters as RFC 9106 recommends for low memory


def hash_password(password: str) -> str:
    """The argon2id hash of `password` in PHC string form (salt and parameters included)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if `password` matches `password_hash`.

    A missing hash (an account without a password) still costs one full verification, so
    the time taken does not reveal which accounts exist or have passwords.
    """
    if password_hash is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_dummy_hash(), password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True if the hash was made with weaker parameters than today's; rehash on sign-in."""
    return _hasher.check_needs_rehash(password_hash)


def password_problem(password: str, username: str) -> str | None:
    """Why `password` is unacceptable for `username`, or None if it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"the password must be at least {MIN_LENGTH} characters long"
    if len(password) > MAX_LENGTH:
        return f"the password must be at most {MAX_LENGTH} characters long"
    if password.strip().lower() == username.lower():
        return "the password must not be the username"
    if len(set(password)) < 5:
        return "the password repeats too few characters to be hard to guess"
    return None


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("devspace timing equaliser")
