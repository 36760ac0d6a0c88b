"""Creating accounts, with the rules every username and email must meet.

Used by `devspace-server create-admin` now and by the admin users API and upstream sign-in
later, so an account is valid however it was made.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from devspace_server.auth.passwords import hash_password, password_problem
from devspace_server.errors import Conflict, InvalidField, ValidationFailed
from devspace_server.models import EMAIL_MAX, USERNAME_MAX, Role, User

USERNAME = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{USERNAME_MAX - 1}}}")
# Deliberately loose: the address is only ever verified by mail or trusted from a provider.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def username_problem(username: str) -> str | None:
    """Why `username` is not acceptable, or None if it is."""
    if not USERNAME.fullmatch(username):
        return (
            f"use 1 to {USERNAME_MAX} characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return None


def email_problem(email: str) -> str | None:
    """Why `email` is not acceptable, or None if it is."""
    if len(email) > EMAIL_MAX or not EMAIL.fullmatch(email):
        return "use an address such as name@example.com"
    return None


def create_user(
    db: Session,
    *,
    username: str,
    role: Role,
    email: str | None = None,
    email_verified: bool = False,
    password: str | None = None,
) -> User:
    """Add a new user to `db` (flushed, not committed) and return it.

    Raises `ValidationFailed` naming each unacceptable field, `Conflict` if the username
    is taken.
    """
    failures = []
    if problem := username_problem(username):
        failures.append(InvalidField("username", "#/username", f"Invalid username: {problem}."))
    if email is not None and (problem := email_problem(email)):
        failures.append(InvalidField("email", "#/email", f"Invalid email: {problem}."))
    if password is not None and (problem := password_problem(password, username)):
        failures.append(InvalidField("password", "#/password", f"Weak password: {problem}."))
    if failures:
        raise ValidationFailed(failures, where="new account")
    taken = f"The username {username!r} is taken: choose another."
    if db.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(taken)
    user = User(
        username=username,
        email=email,
        email_verified=email_verified,
        role=role,
        disabled=False,
        password_hash=hash_password(password) if password is not None else None,
    )
    db.add(user)
    try:
        db.flush()
    except IntegrityError as exc:  # taken between our check and the insert
        db.rollback()
        raise Conflict(taken) from exc
    return user
