"""Configuration: every bad setting is refused, named, and told what to do; nothing unsafe
is replaced by a default."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from devspace_server.app import create_app
from devspace_server.config import Config, load_config, load_database_url
from devspace_server.errors import ConfigError

from .conftest import HOST_KEY_ENCRYPTION_KEY, SECRET


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "DEVSPACE_DATA_DIR": str(tmp_path),
        "DEVSPACE_SECRET_KEY": SECRET,
        "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS": HOST_KEY_ENCRYPTION_KEY,
        "DEVSPACE_PUBLIC_URL": "https://devspace.example.com",
    }


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(environ)
    return caught.value.problems


def test_a_valid_environment_loads_with_safe_defaults(env: dict[str, str], tmp_path: Path) -> None:
    config = load_config(env)
    assert config.data_dir == tmp_path
    assert config.database_url == f"sqlite:///{tmp_path}/devspace.db"
    assert config.public_url == "https://devspace.example.com"
    assert config.cookie_secure
    assert config.log_level == "INFO"
    assert config.login_throttle.max_failures_per_account == 5
    assert SECRET not in repr(config)


def test_a_missing_secret_key_is_refused_with_how_to_make_one(env: dict[str, str]) -> None:
    del env["DEVSPACE_SECRET_KEY"]
    (problem,) = problems(env)
    assert problem.startswith("DEVSPACE_SECRET_KEY is not set")
    assert "secrets.token_urlsafe" in problem
    assert "DEVSPACE_SECRET_KEY_FILE" in problem


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ("short", "too short"),
        ("a" * 40, "placeholder"),
        ("abababababababababababababababababab", "placeholder"),
    ],
)
def test_a_weak_secret_key_is_refused(env: dict[str, str], secret: str, says: str) -> None:
    env["DEVSPACE_SECRET_KEY"] = secret
    (problem,) = problems(env)
    assert problem.startswith("DEVSPACE_SECRET_KEY")
    assert says in problem


def test_the_secret_key_can_come_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(SECRET + "\n")
    del env["DEVSPACE_SECRET_KEY"]
    env["DEVSPACE_SECRET_KEY_FILE"] = str(key)
    assert load_config(env).secret_key == SECRET

    env["DEVSPACE_SECRET_KEY"] = SECRET
    assert "both set" in problems(env)[0]

    del env["DEVSPACE_SECRET_KEY"]
    env["DEVSPACE_SECRET_KEY_FILE"] = str(tmp_path / "missing")
    (problem,) = problems(env)
    assert problem.startswith("DEVSPACE_SECRET_KEY_FILE names")
    assert "cannot be read" in problem


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://devspace.example.com", "plain http on devspace.example.com"),
        ("ftp://devspace.example.com", "https://"),
        ("devspace.example.com", "https://"),
        ("https://devspace.example.com/prefix", "path prefix"),
        ("https://user:pw@devspace.example.com", "must not hold a user"),
    ],
)
def test_an_unsafe_public_url_is_refused(env: dict[str, str], url: str, says: str) -> None:
    env["DEVSPACE_PUBLIC_URL"] = url
    (problem,) = problems(env)
    assert problem.startswith("DEVSPACE_PUBLIC_URL")
    assert says in problem


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:9"])
def test_plain_http_is_allowed_on_loopback_only(env: dict[str, str], url: str) -> None:
    env["DEVSPACE_PUBLIC_URL"] = url
    config = load_config(env)
    assert not config.cookie_secure


def test_a_missing_public_url_is_refused(env: dict[str, str]) -> None:
    del env["DEVSPACE_PUBLIC_URL"]
    assert problems(env) == [
        "DEVSPACE_PUBLIC_URL is not set: set it to the https:// address of this server"
    ]


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DEVSPACE_LOG_LEVEL", "LOUD", "use one of DEBUG"),
        ("DEVSPACE_LOGIN_MAX_FAILURES_PER_ACCOUNT", "1000", "between 1 and 100"),
        ("DEVSPACE_LOGIN_MAX_FAILURES_PER_ACCOUNT", "0", "between 1 and 100"),
        ("DEVSPACE_LOGIN_WINDOW_SECONDS", "soon", "not a whole number"),
        ("DEVSPACE_PROXY_HOPS", "-1", "between 0 and 5"),
        ("DEVSPACE_DATABASE_URL", "mysql://db/devspace", "only sqlite and postgresql"),
        ("DEVSPACE_DATABASE_URL", "sqlite://", "in-memory"),
        ("DEVSPACE_DATABASE_URL", "not a url", "not a database URL"),
        ("DEVSPACE_DATA_DIR", "relative/dir", "absolute path"),
    ],
)
def test_each_bad_setting_is_named(env: dict[str, str], name: str, value: str, says: str) -> None:
    env[name] = value
    (problem,) = problems(env)
    assert problem.startswith(name)
    assert says in problem


def test_every_problem_is_reported_at_once(env: dict[str, str]) -> None:
    env.update(
        {"DEVSPACE_SECRET_KEY": "x", "DEVSPACE_LOG_LEVEL": "LOUD", "DEVSPACE_PUBLIC_URL": ""}
    )
    assert [p.split()[0] for p in problems(env)] == [
        "DEVSPACE_PUBLIC_URL",
        "DEVSPACE_LOG_LEVEL",
        "DEVSPACE_SECRET_KEY",
    ]


def test_postgres_urls_get_the_installed_driver(env: dict[str, str]) -> None:
    env["DEVSPACE_DATABASE_URL"] = "postgresql://devspace:pw@db.internal:5432/devspace"
    config = load_config(env)
    assert config.database_url == "postgresql+psycopg://devspace:pw@db.internal:5432/devspace"


def test_a_file_supplies_settings_and_the_environment_wins(
    env: dict[str, str], tmp_path: Path
) -> None:
    file = tmp_path / "devspace.toml"
    file.write_text('log_level = "debug"\nlogin_window_seconds = 120\nproxy_hops = 1\n')
    env["DEVSPACE_CONFIG_FILE"] = str(file)
    env["DEVSPACE_PROXY_HOPS"] = "2"
    config = load_config(env)
    assert config.log_level == "DEBUG"
    assert config.login_throttle.window_seconds == 120
    assert config.proxy_hops == 2


def test_a_bad_value_in_the_file_is_named_by_its_key(env: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "devspace.toml"
    file.write_text("login_window_seconds = 5\n")
    env["DEVSPACE_CONFIG_FILE"] = str(file)
    (problem,) = problems(env)
    assert problem.startswith(f"login_window_seconds in {file} is 5")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("secret_kee = 'typo'\n", "unknown settings secret_kee"),
        ("log_level = \n", "not valid TOML"),
        ("[login]\nwindow = 3\n", "unknown settings login"),
    ],
)
def test_a_bad_file_is_refused(
    env: dict[str, str], tmp_path: Path, content: str, says: str
) -> None:
    file = tmp_path / "devspace.toml"
    file.write_text(content)
    env["DEVSPACE_CONFIG_FILE"] = str(file)
    assert says in problems(env)[0]


def test_migrate_and_create_admin_need_only_the_database(tmp_path: Path) -> None:
    assert load_database_url({"DEVSPACE_DATA_DIR": str(tmp_path)}) == (
        f"sqlite:///{tmp_path}/devspace.db"
    )
    with pytest.raises(ConfigError, match="DEVSPACE_DATABASE_URL"):
        load_database_url({"DEVSPACE_DATABASE_URL": "oracle://x"})


def test_the_app_refuses_to_start_without_a_secret_key(env: dict[str, str]) -> None:
    config = load_config(env)
    for secret in ("", "too-short"):
        with pytest.raises(ConfigError, match="DEVSPACE_SECRET_KEY"):
            create_app(replace(config, secret_key=secret))
    with pytest.raises(ConfigError, match="DEVSPACE_PUBLIC_URL"):
        create_app(replace(config, public_url="http://devspace.example.com"))
    assert isinstance(config, Config)


def test_gunicorn_entry_point_refuses_to_load_without_a_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSPACE_")}
    env.update(DEVSPACE_DATA_DIR=str(tmp_path), DEVSPACE_PUBLIC_URL="https://devspace.example.com")
    done = subprocess.run(
        [sys.executable, "-c", "import devspace_server.wsgi"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 4  # gunicorn's "app failed to load": the arbiter stops
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("devspace-server: DEVSPACE_SECRET_KEY is not set")
