"""The server's configuration: `DEVSPACE_*` environment variables over an optional TOML file.

`load_config()` reads and validates everything at start and raises one `ConfigError` that
names every bad setting and says what to do. Unsafe values are refused, never replaced by a
default: a server that starts is a server whose configuration was checked.

Each setting has an environment variable `DEVSPACE_<NAME>` and a key `<name>` in the file
named by `DEVSPACE_CONFIG_FILE`; the environment wins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from devspace_server import config_file, config_secrets
from devspace_server.auth.providers import UpstreamProvider, parse_providers
from devspace_server.ca import CertificateAuthority
from devspace_server.cluster_config import KEYS as CLUSTER_KEYS
from devspace_server.cluster_config import ClusterConfig, parse_cluster
from devspace_server.config_secrets import HOST_KEY_ENCRYPTION_UNSET, secret_problem
from devspace_server.config_secrets import checked as _checked
from devspace_server.errors import ConfigError
from devspace_server.gateway_endpoint import KEYS as GATEWAY_KEYS
from devspace_server.gateway_endpoint import GatewayEndpoint, parse_gateway
from devspace_server.host_key_sealing import HostKeySealer

PREFIX = "DEVSPACE_"
# Hosts on which a plain-http public URL (and so a cookie without Secure) is acceptable:
# the traffic never leaves the machine.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# `json` (one object a line, for log collectors) or `text` (for a person at a terminal).
LOG_FORMATS = ("json", "text")

SETTINGS = (
    "data_dir",
    "database_url",
    "secret_key",
    "secret_key_file",
    "public_url",
    "log_level",
    "log_format",
    "proxy_hops",
    "session_lifetime_seconds",
    "login_max_failures_per_account",
    "login_max_failures_per_ip",
    "login_window_seconds",
    "access_token_lifetime_seconds",
    "refresh_token_lifetime_seconds",
    "ssh_ca_key_file",
    "ssh_ca_previous_public_keys",
    "ssh_ca_public_keys",  # the reconciler's (reconcile/settings.py); the API reads the key file
    "ssh_cert_lifetime_seconds",
    "host_key_encryption_keys",
    "host_key_encryption_keys_file",
    "gateway_secret",
    "gateway_secret_file",
    "metrics_token",
    "metrics_token_file",
    *GATEWAY_KEYS,
    *CLUSTER_KEYS,
)


@dataclass(frozen=True)
class LoginThrottle:
    """How many failed sign-ins are allowed per account and per client address in a window."""

    max_failures_per_account: int = 5
    max_failures_per_ip: int = 50
    window_seconds: int = 900


@dataclass(frozen=True)
class Config:
    """A validated configuration. Build it with `load_config()`, which checks every value."""

    data_dir: Path
    database_url: str = field(repr=False)  # may hold the database's password
    secret_key: str = field(repr=False)
    public_url: str
    log_level: str = "INFO"
    log_format: str = "json"
    proxy_hops: int = 0
    """How many reverse proxies in front of us to believe about the client's address."""
    session_lifetime_seconds: int = 12 * 3600
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    upstream: tuple[UpstreamProvider, ...] = ()
    """The upstream sign-in providers, in the order the sign-in page offers them."""
    access_token_lifetime_seconds: int = 600
    """OAuth access tokens are short-lived: a disabled user is also checked on every use."""
    refresh_token_lifetime_seconds: int = 30 * 86_400
    """How long a CLI sign-in lasts unused; every refresh starts it afresh."""
    ssh_ca: CertificateAuthority | None = field(default=None, repr=False, compare=False)
    """Signs SSH certificates; None (and `/api/v1/ssh/` answers 503) without a CA key file."""
    ssh_cert_lifetime_seconds: int = 4 * 3600
    host_key_sealer: HostKeySealer | None = field(default=None, repr=False, compare=False)
    """Seals the sidecars' host private keys in the database. Required: None only in a
    reading with problems, and `create_app` refuses it (host keys are never stored plain)."""
    gateway_secret: str | None = field(default=None, repr=False)
    """Shared with the SSH gateway, which sends it to `/internal/gateway/principals`; None
    (and that endpoint answers 503) when unset."""
    metrics_token: str | None = field(default=None, repr=False)
    """What Prometheus presents as a Bearer token to `/metrics`; None (and `/metrics`
    answers 503, so that metrics are never public by default) when unset."""
    gateway: GatewayEndpoint | None = None
    """Where the CLI reaches the SSH gateway and the host keys it pins; None (and
    `/api/v1/ssh/gateway` answers 503) when unset."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """Spaces: the cluster layout, quota defaults, and the reconciler's kubeconfig."""

    @property
    def cookie_secure(self) -> bool:
        """Whether cookies must carry `Secure`: always, unless served on plain-http loopback."""
        return urlsplit(self.public_url).scheme == "https"


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """`$XDG_DATA_HOME/devspace`, or `~/.local/share/devspace` when that is unset."""
    xdg = environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "devspace"


def default_database_url(data_dir: Path) -> str:
    """The embedded default: a SQLite file in the data directory."""
    return URL.create("sqlite", database=str(data_dir / "devspace.db")).render_as_string()


class _Settings:
    """Raw values from the environment and the file, and the problems found so far."""

    def __init__(
        self, environ: Mapping[str, str], defaults: Mapping[str, str], file_values: dict[str, str]
    ) -> None:
        self.environ = environ
        self.defaults = defaults
        self.file_values = file_values
        self.file_name = environ.get(f"{PREFIX}CONFIG_FILE", "")
        self.problems: list[str] = []
        self.failed: set[str] = set()

    def name(self, key: str) -> str:
        """How to refer to a setting in a message: the variable, or the file key if from there."""
        env = f"{PREFIX}{key.upper()}"
        if env not in self.environ and key in self.file_values:
            return f"{key} in {self.file_name}"
        return env

    def raw(self, key: str) -> str | None:
        env = f"{PREFIX}{key.upper()}"
        if env in self.environ:
            return self.environ[env]
        return self.file_values.get(key, self.defaults.get(key))

    def problem(self, key: str, message: str) -> None:
        self.failed.add(key)
        self.problems.append(f"{self.name(key)} {message}")


def _read_file(environ: Mapping[str, str]) -> dict[str, str]:
    return config_file.read(environ.get(f"{PREFIX}CONFIG_FILE"), SETTINGS)


class _Bounds(NamedTuple):
    default: int
    low: int
    high: int
    why: str
    """Why the bounds are where they are; part of the message when a value is outside."""


# Outside these bounds a value is refused: an unsafe limit is a mistake to report, not to fix.
INTEGER_SETTINGS = {
    "login_max_failures_per_account": _Bounds(5, 1, 100, "more lets guessing go on longer"),
    "login_max_failures_per_ip": _Bounds(50, 1, 10_000, "an address's guesses per window"),
    "login_window_seconds": _Bounds(900, 60, 86_400, "shorter windows forget guesses too soon"),
    "proxy_hops": _Bounds(0, 0, 5, "how many reverse proxies are in front of the server"),
    "session_lifetime_seconds": _Bounds(12 * 3600, 300, 30 * 86_400, "how long a sign-in lasts"),
    "access_token_lifetime_seconds": _Bounds(
        600, 60, 3600, "a stolen access token works until it expires"
    ),
    "refresh_token_lifetime_seconds": _Bounds(
        30 * 86_400, 3600, 365 * 86_400, "how long an unused CLI sign-in lasts"
    ),
    "ssh_cert_lifetime_seconds": _Bounds(
        4 * 3600, 300, 24 * 3600, "an SSH certificate cannot be revoked, only expire"
    ),
}


def _integer(s: _Settings, key: str) -> int:
    default, low, high, why = INTEGER_SETTINGS[key]
    raw = s.raw(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        s.problem(key, f"is {raw!r}, not a whole number: set it to one between {low} and {high}")
        return default
    if not low <= value <= high:
        s.problem(key, f"is {value}: set it between {low} and {high} ({why})")
    return value


def _database_url(raw: str) -> str:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ValueError(
            "is not a database URL: use sqlite:////absolute/path.db "
            "or postgresql://user@host/database"
        ) from None
    if url.get_backend_name() == "postgresql":
        # Only psycopg 3 is installed; SQLAlchemy's default PostgreSQL driver is psycopg2.
        if url.get_driver_name() not in ("psycopg", "psycopg2"):
            raise ValueError(f"names driver {url.get_driver_name()!r}: use postgresql+psycopg://")
        url = url.set(drivername="postgresql+psycopg")
    elif url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            # Each gunicorn worker would get its own empty database.
            raise ValueError("names an in-memory SQLite database: use sqlite:////path/to/file.db")
    else:
        raise ValueError(f"uses {url.get_backend_name()!r}: only sqlite and postgresql work")
    return url.render_as_string(hide_password=False)


def _public_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"is {raw!r}: set it to the https:// address people reach the server at")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not hold a user, password, query or fragment")
    if parts.path not in ("", "/"):
        raise ValueError("has a path: serving under a path prefix is not supported yet")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(
            f"is plain http on {parts.hostname}: sign-in cookies and tokens would cross the "
            "network unencrypted; use https:// (plain http only on 127.0.0.1 or localhost)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _data_dir(s: _Settings) -> Path:
    raw = s.raw("data_dir")
    path = Path(raw).expanduser() if raw else default_data_dir(s.environ)
    if not path.is_absolute():
        s.problem("data_dir", f"is {raw!r}: use an absolute path")
    return path


def check_safe(config: Config) -> None:
    """Raises `ConfigError` if `config` is unsafe to serve with, however it was built."""
    problems = []
    secret = secret_problem(config.secret_key)
    if secret:
        problems.append(f"{PREFIX}SECRET_KEY {secret}")
    try:
        _public_url(config.public_url)
    except ValueError as exc:
        problems.append(f"{PREFIX}PUBLIC_URL {exc}")
    if config.host_key_sealer is None:
        problems.append(HOST_KEY_ENCRYPTION_UNSET)
    if problems:
        raise ConfigError(problems)


@dataclass(frozen=True)
class ConfigReading:
    """What reading the configuration found, usable even when it found problems."""

    config: Config
    """Every setting as read; a bad one holds its default (or is empty)."""
    problems: list[str]
    """One message per problem, naming the setting and what to do."""
    failed: frozenset[str]
    """The keys of the settings with a problem, e.g. `database_url`."""
    name: Callable[[str], str]
    """How to name a setting in a message: its variable, or its key in the file."""


def load_config(
    environ: Mapping[str, str] | None = None, *, defaults: Mapping[str, str] | None = None
) -> Config:
    """Read and validate the configuration.

    `environ` defaults to `os.environ`; `defaults` supplies values used only when neither
    the environment nor the file sets them (`serve` uses it for its secret key file and its
    loopback public URL). Returns a `Config`; raises `ConfigError` listing every problem.
    """
    reading = read_config(environ, defaults=defaults)
    if reading.problems:
        raise ConfigError(reading.problems)
    return reading.config


def read_config(
    environ: Mapping[str, str] | None = None, *, defaults: Mapping[str, str] | None = None
) -> ConfigReading:
    """Read the configuration as `load_config` does, but return its problems, not raise them.

    For `check-config`, which reports every problem and then checks what it can reach.
    Raises `ConfigError` only if the configuration file cannot be read at all.
    """
    environ = os.environ if environ is None else environ
    s = _Settings(environ, defaults or {}, _read_file(environ))

    data_dir = _data_dir(s)
    raw_db = s.raw("database_url")
    database_url = default_database_url(data_dir)
    if raw_db:
        database_url = _checked(s, "database_url", _database_url, raw_db) or database_url

    raw_public = s.raw("public_url")
    public_url = ""
    if not raw_public:
        s.problem("public_url", "is not set: set it to the https:// address of this server")
    else:
        public_url = _checked(s, "public_url", _public_url, raw_public) or ""

    log_level = (s.raw("log_level") or "INFO").strip().upper()
    if log_level not in LOG_LEVELS:
        s.problem("log_level", f"is {log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    log_format = (s.raw("log_format") or "json").strip().lower()
    if log_format not in LOG_FORMATS:
        s.problem("log_format", f"is {log_format!r}: use one of {', '.join(LOG_FORMATS)}")

    throttle = LoginThrottle(
        max_failures_per_account=_integer(s, "login_max_failures_per_account"),
        max_failures_per_ip=_integer(s, "login_max_failures_per_ip"),
        window_seconds=_integer(s, "login_window_seconds"),
    )
    secret_key = config_secrets.secret_key(s)
    proxy_hops = _integer(s, "proxy_hops")
    session_lifetime = _integer(s, "session_lifetime_seconds")
    upstream = parse_providers(s.raw, s.problem)
    access_lifetime = _integer(s, "access_token_lifetime_seconds")
    refresh_lifetime = _integer(s, "refresh_token_lifetime_seconds")
    ssh_ca = config_secrets.ssh_ca(s)
    ssh_cert_lifetime = _integer(s, "ssh_cert_lifetime_seconds")
    host_key_sealer = config_secrets.host_key_sealer(s)
    gateway_secret = config_secrets.shared_secret(s, "gateway_secret", secret_key)
    metrics_token = config_secrets.shared_secret(s, "metrics_token", secret_key)
    gateway = parse_gateway(s.raw, s.problem)
    cluster = parse_cluster(s.raw, s.problem)
    config = Config(
        data_dir=data_dir,
        database_url=database_url,
        secret_key=secret_key,
        public_url=public_url,
        log_level=log_level,
        log_format=log_format,
        proxy_hops=proxy_hops,
        session_lifetime_seconds=session_lifetime,
        login_throttle=throttle,
        upstream=upstream,
        access_token_lifetime_seconds=access_lifetime,
        refresh_token_lifetime_seconds=refresh_lifetime,
        ssh_ca=ssh_ca,
        ssh_cert_lifetime_seconds=ssh_cert_lifetime,
        host_key_sealer=host_key_sealer,
        gateway_secret=gateway_secret,
        metrics_token=metrics_token,
        gateway=gateway,
        cluster=cluster,
    )
    return ConfigReading(config, s.problems, frozenset(s.failed), s.name)


def load_database_url(environ: Mapping[str, str] | None = None) -> str:
    """Only the database URL (for `migrate` and `create-admin`, which serve nothing).

    Returns a normalised SQLAlchemy URL; raises `ConfigError` if it is invalid.
    """
    environ = os.environ if environ is None else environ
    s = _Settings(environ, {}, _read_file(environ))
    data_dir = _data_dir(s)
    raw_db = s.raw("database_url")
    url = _checked(s, "database_url", _database_url, raw_db) if raw_db else None
    if s.problems:
        raise ConfigError(s.problems)
    return url or default_database_url(data_dir)


def setting(environ: Mapping[str, str], key: str) -> str | None:
    """One setting's raw value from the environment or the file; None if unset or empty.

    Raises `ConfigError` if the file cannot be read.
    """
    return _Settings(environ, {}, _read_file(environ)).raw(key) or None


def resolve_data_dir(environ: Mapping[str, str]) -> Path:
    """The data directory the configuration names, or the default one.

    Raises `ConfigError` if it is not an absolute path or the file cannot be read.
    """
    s = _Settings(environ, {}, _read_file(environ))
    path = _data_dir(s)
    if s.problems:
        raise ConfigError(s.problems)
    return path
