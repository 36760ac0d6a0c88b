"""Passwords are hashed with argon2id; `create-admin` makes an admin from a prompted
password and says clearly why it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from devspace_server import db
from devspace_server.auth.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from devspace_server.main import cli
from devspace_server.models import Role, User

from .conftest import PASSWORD

SERVER = Path(sys.executable).with_name("devspace-server")


def test_passwords_are_hashed_with_argon2id_and_a_fresh_salt() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first.startswith("$argon2id$")
    assert first != second
    assert verify_password(first, PASSWORD)
    assert not verify_password(first, PASSWORD + "!")
    assert not verify_password("not a hash", PASSWORD)
    assert not verify_password(None, PASSWORD)
    assert not needs_rehash(first)


def test_weak_hashes_are_flagged_for_rehashing() -> None:
    old = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    assert verify_password(old, PASSWORD)
    assert needs_rehash(old)


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("short", "at least 12"),
        ("x" * 1025, "at most 1024"),
        ("Administrator", "not be the username"),
        ("aaaaaaaaaaaaaaaa", "too few characters"),
    ],
)
def test_weak_passwords_are_refused(password: str, says: str) -> None:
    problem = password_problem(password, "administrator")
    assert problem is not None
    assert says in problem


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


def create_admin(database_url: str, *args: str, stdin: str = PASSWORD + "\n") -> Result:
    return CliRunner().invoke(
        cli,
        ["create-admin", *args],
        input=stdin,
        env={"DEVSPACE_DATABASE_URL": database_url, "DEVSPACE_CONFIG_FILE": None},
    )


def test_create_admin_reads_the_password_from_stdin(database_url: str, engine: Engine) -> None:
    result = create_admin(database_url, "--username", "root", "--email", "root@example.com")
    assert result.exit_code == 0, result.output
    user_id = result.stdout.strip()
    with Session(engine) as session:
        user = session.scalars(select(User)).one()
    assert user.id == user_id
    assert (user.username, user.email, user.role) == ("root", "root@example.com", Role.ADMIN)
    assert not user.email_verified
    assert not user.disabled
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, PASSWORD)


def test_create_admin_never_takes_the_password_as_an_argument(database_url: str) -> None:
    result = create_admin(database_url, "--username", "root", "--password", PASSWORD)
    assert result.exit_code == 2
    assert "No such option '--password'" in result.output


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["--username", "Root!"], PASSWORD + "\n", "Invalid username: use 1 to 64 characters"),
        (["--username", "root"], "short\n", "Weak password: the password must be at least 12"),
        (["--username", "root", "--email", "nope"], PASSWORD + "\n", "Invalid email"),
        (["--username", "root"], "", "no password on stdin"),
    ],
)
def test_create_admin_refuses_bad_input_in_one_line(
    database_url: str, args: list[str], stdin: str, says: str
) -> None:
    result = create_admin(database_url, *args, stdin=stdin)
    assert result.exit_code in (1, 2)
    assert says in result.output
    assert "Traceback" not in result.output


def test_create_admin_refuses_a_taken_username(database_url: str) -> None:
    assert create_admin(database_url, "--username", "root").exit_code == 0
    result = create_admin(database_url, "--username", "root")
    assert result.exit_code == 1
    assert result.output == "Error: The username 'root' is taken: choose another.\n"


def test_create_admin_on_an_unmigrated_database_says_to_migrate(empty_database_url: str) -> None:
    result = create_admin(empty_database_url, "--username", "root")
    assert result.exit_code == 1
    assert "run `devspace-server migrate` first" in result.output
    migrated = CliRunner().invoke(
        cli, ["migrate"], env={"DEVSPACE_DATABASE_URL": empty_database_url}
    )
    assert migrated.exit_code == 0, migrated.output
    assert create_admin(empty_database_url, "--username", "root").exit_code == 0


def test_an_unreachable_database_is_one_clear_line(unreachable_sqlite_url: str) -> None:
    for args, says in (
        (["migrate"], "Error: cannot create the database directory"),
        (["create-admin", "--username", "root"], "Error: cannot reach the database at sqlite:"),
    ):
        env = {"DEVSPACE_DATABASE_URL": unreachable_sqlite_url}
        result = CliRunner().invoke(cli, args, env=env, input=PASSWORD + "\n")
        assert result.exit_code == 1
        assert result.output.startswith(says)
        assert result.output.count("\n") == 1


def test_create_admin_reads_the_password_from_a_file(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")  # as a mounted Secret made by hand often is
    result = create_admin(database_url, "--username", "root", "--password-file", str(secret))
    assert result.exit_code == 0, result.output
    with Session(engine) as session:
        user = session.scalars(select(User)).one()
    assert verify_password(user.password_hash, PASSWORD)


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot read the password file"), ("", "is empty"), ("\n", "is empty")],
)
def test_an_unusable_password_file_is_one_line(
    database_url: str, tmp_path: Path, content: str | None, says: str
) -> None:
    secret = tmp_path / "password"
    if content is not None:
        secret.write_text(content)
    result = create_admin(database_url, "--username", "root", "--password-file", str(secret))
    assert result.exit_code == 2
    assert says in result.output
    assert "Traceback" not in result.output


def test_if_missing_leaves_an_existing_account_as_it_is(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    first = create_admin(database_url, "--username", "root")
    assert first.exit_code == 0, first.output
    other = tmp_path / "password"
    other.write_text("another long passphrase 42")
    again = create_admin(
        database_url, "--username", "root", "--password-file", str(other), "--if-missing"
    )
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == first.stdout.strip()  # the same account's id
    assert f"admin 'root' (id {first.stdout.strip()}) exists already" in again.stderr
    with Session(engine) as session:
        user = session.scalars(select(User)).one()
    assert verify_password(user.password_hash, PASSWORD)  # not the file's


def test_if_missing_names_a_non_admin_account_that_holds_the_name(
    database_url: str, make_user: Any
) -> None:
    make_user("root", role=Role.USER)
    result = create_admin(database_url, "--username", "root", "--if-missing", stdin="")
    assert result.exit_code == 0, result.output
    assert "user (role user, not admin) 'root'" in result.stderr


def test_replicas_racing_on_the_name_all_end_well(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """The chart runs `create-admin --if-missing` in every API pod as it starts; several
    replicas at once race on the unique username, and every loser must say "exists"."""
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    argv = [
        str(SERVER),
        "create-admin",
        "--username",
        "root",
        "--password-file",
        str(secret),
        "--if-missing",
    ]
    env = {**os.environ, "DEVSPACE_DATABASE_URL": database_url}
    env.pop("DEVSPACE_CONFIG_FILE", None)
    racers = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [(racer.wait(60), *racer.communicate()) for racer in racers]
    for code, _, stderr in results:
        assert code == 0, stderr
        assert "Traceback" not in stderr
    assert sum("created admin 'root'" in stderr for _, _, stderr in results) == 1
    assert len({stdout.strip() for _, stdout, _ in results}) == 1
    with Session(engine) as session:
        assert len(session.scalars(select(User)).all()) == 1
