"""`devspace-server check-config`, run as an admin runs it: every problem printed, exit 1;
what the settings name (the database, a real OpenID provider) tried for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.oidc import OidcProvider
from testbed.postgres import PostgresServer
from testbed.process import free_port

from .conftest import CLIENT_SECRET

SERVER = Path(sys.executable).with_name("devspace-server")


def check_config(settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSPACE_", "XDG_"))}
    return subprocess.run(
        [str(SERVER), "check-config"],
        env=env | settings,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def with_oidc(settings: dict[str, str], provider: OidcProvider) -> dict[str, str]:
    return settings | {
        "DEVSPACE_UPSTREAM_PROVIDERS": "idp",
        "DEVSPACE_UPSTREAM_IDP_DISCOVERY_URL": provider.discovery_url,
        "DEVSPACE_UPSTREAM_IDP_CLIENT_ID": "devspace",
        "DEVSPACE_UPSTREAM_IDP_CLIENT_SECRET": CLIENT_SECRET,
    }


def test_a_good_configuration_passes_and_says_what_it_reached(
    with_oidc: dict[str, str], provider: OidcProvider
) -> None:
    result = check_config(with_oidc)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert f"upstream idp: {provider.discovery_url} answers, issuer {provider.issuer}" in (
        result.stderr
    )
    assert "at migration" in result.stderr
    assert "the configuration is fine" in result.stderr


def test_a_missing_secret_is_reported(with_oidc: dict[str, str]) -> None:
    del with_oidc["DEVSPACE_SECRET_KEY"]
    result = check_config(with_oidc)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("DEVSPACE_SECRET_KEY is not set")


def test_a_missing_host_key_encryption_key_is_reported(with_oidc: dict[str, str]) -> None:
    del with_oidc["DEVSPACE_HOST_KEY_ENCRYPTION_KEYS"]
    result = check_config(with_oidc)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("DEVSPACE_HOST_KEY_ENCRYPTION_KEYS is not set: ")
    assert "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS_FILE" in line


def test_a_malformed_database_url_is_reported(with_oidc: dict[str, str]) -> None:
    with_oidc["DEVSPACE_DATABASE_URL"] = "postgres//devspace@db"
    result = check_config(with_oidc)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("DEVSPACE_DATABASE_URL is not a database URL")


def test_an_oidc_url_that_does_not_answer_is_reported(with_oidc: dict[str, str]) -> None:
    # Nothing listens on a port that was free a moment ago.
    url = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"
    with_oidc["DEVSPACE_UPSTREAM_IDP_DISCOVERY_URL"] = url
    result = check_config(with_oidc)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"DEVSPACE_UPSTREAM_IDP_DISCOVERY_URL: {url} does not answer")


def test_an_oidc_url_that_answers_something_else_is_reported(
    with_oidc: dict[str, str], provider: OidcProvider
) -> None:
    with_oidc["DEVSPACE_UPSTREAM_IDP_DISCOVERY_URL"] = f"{provider.issuer}/no-such-document"
    result = check_config(with_oidc)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert "answers 404, not the discovery document" in line


def test_every_problem_is_printed_not_only_the_first(
    with_oidc: dict[str, str], tmp_path: Path
) -> None:
    del with_oidc["DEVSPACE_SECRET_KEY"]
    with_oidc["DEVSPACE_DATABASE_URL"] = "mysql://devspace@db/devspace"
    with_oidc["DEVSPACE_UPSTREAM_IDP_DISCOVERY_URL"] = f"http://127.0.0.1:{free_port()}/"
    with_oidc["DEVSPACE_GATEWAY_SECRET_FILE"] = str(tmp_path / "missing")
    result = check_config(with_oidc)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[0].rstrip(":") for line in lines] == [
        "DEVSPACE_DATABASE_URL",
        "DEVSPACE_SECRET_KEY",
        "DEVSPACE_GATEWAY_SECRET_FILE",
        "DEVSPACE_UPSTREAM_IDP_DISCOVERY_URL",
    ]
    assert "4 problems in the configuration" in result.stderr


@pytest.mark.postgres
def test_a_database_that_does_not_answer_is_reported(
    settings: dict[str, str], postgres: PostgresServer
) -> None:
    settings["DEVSPACE_DATABASE_URL"] = f"postgresql://devspace@127.0.0.1:{free_port()}/devspace"
    result = check_config(settings)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("DEVSPACE_DATABASE_URL: cannot reach the database")


def test_an_unusable_sqlite_file_is_reported_and_a_missing_one_not_created(
    settings: dict[str, str], tmp_path: Path, unreachable_sqlite_url: str
) -> None:
    settings["DEVSPACE_DATABASE_URL"] = unreachable_sqlite_url
    result = check_config(settings)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("DEVSPACE_DATABASE_URL: the SQLite database")

    fresh = tmp_path / "new" / "devspace.db"
    settings["DEVSPACE_DATABASE_URL"] = f"sqlite:///{fresh}"
    result = check_config(settings)
    assert result.returncode == 0, result.stdout
    assert "does not exist yet" in result.stderr
    assert not fresh.exists()
    assert not fresh.parent.exists()
