"""`devspace-server serve`: the embedded default, one machine and nothing else to install.

Keeps a secret key, an SSH CA key, the SSH gateway's shared secret and the key that encrypts
the sidecars' host keys in the database in the data directory (each created on first start,
mode 0600, and kept across restarts), migrates the database,
binds the listening socket itself (so "port in use" is one clear line) and runs gunicorn on
it. Each gunicorn worker builds its own app, and so its own engine, after the fork: no
connection is ever shared between processes.

The workers (and the reconciler child) count metrics in prometheus_client's multiprocess
mode, in `<data dir>/metrics` (emptied at each start) unless `PROMETHEUS_MULTIPROC_DIR`
names another directory; gunicorn's access log is off, `telemetry.py` logs each request.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from devspace_server import ca, db, host_key_sealing, logs, metrics
from devspace_server.app import create_app
from devspace_server.config import (
    LOOPBACK_HOSTS,
    Config,
    load_config,
    resolve_data_dir,
    setting,
)
from devspace_server.errors import DevspaceError

KEY_FILE_NAME = "secret_key"
SSH_CA_KEY_FILE_NAME = "ssh_ca_key"
GATEWAY_SECRET_FILE_NAME = "gateway_secret"  # noqa: S105 - a file name, not a secret
HOST_KEY_ENCRYPTION_KEYS_FILE_NAME = host_key_sealing.DATA_DIR_FILE_NAME
METRICS_DIR_NAME = "metrics"
log = logging.getLogger(__name__)


class ServeError(DevspaceError):
    """`serve` cannot start: the address, the data directory or its secret key file."""

    slug = "serve"
    title = "Cannot serve"


@dataclass(frozen=True)
class Bind:
    """Where to listen."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Bind:
        """`HOST:PORT` or `[IPv6]:PORT`. Raises `ServeError` if it is neither."""
        host, sep, port = text.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ServeError(f"--bind {text!r} is not HOST:PORT (for example 127.0.0.1:8080)")
        return cls(host, int(port))

    @property
    def url(self) -> str:
        """`http://host:port`, bracketing an IPv6 address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def ensure_secret_key_file(data_dir: Path) -> Path:
    """The data directory's secret key file, created (random, mode 0600) if missing.

    Raises `ServeError` if it exists but others may read it, or is empty or unreadable.
    """
    return _ensure_private_file(data_dir / KEY_FILE_NAME, _new_secret_key)


def _new_secret_key() -> bytes:
    return (secrets.token_urlsafe(48) + "\n").encode()


def ensure_ssh_ca_key_file(data_dir: Path) -> Path:
    """The data directory's SSH CA key file, created (a new Ed25519 key, 0600) if missing.

    Raises `ServeError` if it exists but others may read it; `load_config` checks the key.
    """
    return _ensure_private_file(data_dir / SSH_CA_KEY_FILE_NAME, ca.new_private_key_file_content)


def ensure_gateway_secret_file(data_dir: Path) -> Path:
    """The data directory's SSH gateway secret file, created (random, 0600) if missing.

    The gateway's principals command presents it to `/internal/gateway/principals`.
    Raises `ServeError` if it exists but others may read it, or cannot be created.
    """
    return _ensure_private_file(data_dir / GATEWAY_SECRET_FILE_NAME, _new_secret_key)


def ensure_host_key_encryption_keys_file(data_dir: Path) -> Path:
    """The data directory's host key encryption key file, created (one random key, 0600)
    if missing. Kept apart from the database: a copy of the database alone opens nothing.

    Raises `ServeError` if it exists but others may read it, or cannot be created.
    """
    return _ensure_private_file(
        data_dir / HOST_KEY_ENCRYPTION_KEYS_FILE_NAME, host_key_sealing.new_keys_file_content
    )


def _ensure_private_file(path: Path, content: Callable[[], bytes]) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: two starts at once cannot both write a key; O_NOFOLLOW: not via a symlink.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ServeError(f"cannot create {path}: {exc.strerror}") from exc
    else:
        with os.fdopen(fd, "wb") as file:
            file.write(content())
        log.info("created %s", path)
        return path
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        raise ServeError(f"{path} is not a regular file: remove it, and a new key is made")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServeError(f"{path} may be read by others (mode {mode & 0o777:o}): chmod 600 it")
    return path


def serve_config(environ: Mapping[str, str], bind: Bind) -> Config:
    """The configuration `serve` runs with: the environment and file, plus its own defaults.

    Those defaults are the data directory's secret key file (unless a secret is
    configured), its SSH CA key file, gateway secret file and host key encryption key file
    (unless those are configured)
    and, when listening on loopback, `http://<bind>` as the public URL.
    Raises `ConfigError` or `ServeError`.
    """
    defaults: dict[str, str] = {}
    if not setting(environ, "secret_key") and not setting(environ, "secret_key_file"):
        data_dir = resolve_data_dir(environ)
        defaults["secret_key_file"] = str(ensure_secret_key_file(data_dir))
    if not setting(environ, "ssh_ca_key_file"):
        data_dir = resolve_data_dir(environ)
        defaults["ssh_ca_key_file"] = str(ensure_ssh_ca_key_file(data_dir))
    if not setting(environ, "gateway_secret") and not setting(environ, "gateway_secret_file"):
        data_dir = resolve_data_dir(environ)
        defaults["gateway_secret_file"] = str(ensure_gateway_secret_file(data_dir))
    if not setting(environ, "host_key_encryption_keys") and not setting(
        environ, "host_key_encryption_keys_file"
    ):
        data_dir = resolve_data_dir(environ)
        defaults["host_key_encryption_keys_file"] = str(
            ensure_host_key_encryption_keys_file(data_dir)
        )
    if bind.host in LOOPBACK_HOSTS:
        defaults["public_url"] = bind.url
    return load_config(environ, defaults=defaults)


def prepare_metrics(environ: Mapping[str, str]) -> Path:
    """Empty (or create) the multiprocess metrics directory and point this process (and so
    the gunicorn workers and the reconciler child it starts) at it.

    `PROMETHEUS_MULTIPROC_DIR` if set, else `<data dir>/metrics`. Call once, before `run`
    and before starting the reconciler child. Returns the directory; raises `ServeError`
    if it cannot be made.
    """
    named = environ.get(metrics.MULTIPROC_ENV)
    path = Path(named) if named else resolve_data_dir(environ) / METRICS_DIR_NAME
    try:
        metrics.prepare_multiprocess_dir(path)
    except OSError as exc:
        raise ServeError(f"cannot prepare the metrics directory {path}: {exc.strerror}") from exc
    return path


def listen(bind: Bind) -> socket.socket:
    """A listening socket on `bind`. Raises `ServeError` saying why it cannot be had."""
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As gunicorn does: a restart may rebind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind.host, bind.port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = "is in use: stop what listens there, or choose another port with --bind"
        elif exc.errno == errno.EACCES:
            why = "needs privileges: choose a port above 1023 with --bind"
        elif exc.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME):
            why = "is not an address of this machine: choose another with --bind"
        else:
            why = f"cannot be bound ({exc.strerror or exc})"
        raise ServeError(f"{bind.host}:{bind.port} {why}") from exc
    return sock


def _worker_exited(_arbiter: object, worker: Any) -> None:
    metrics.mark_process_dead(worker.pid)


class _Gunicorn(BaseApplication):
    """gunicorn driven from code: our options, our socket, our app factory."""

    def __init__(self, factory: Callable[[], Any], options: Mapping[str, object]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._factory()


def run(config: Config, sock: socket.socket, workers: int) -> None:
    """Migrate, then serve `config` with gunicorn on `sock` until stopped.

    Raises `DatabaseUnavailable` if the database cannot be reached for migrating.
    """
    engine = db.make_engine(config.database_url)
    db.ensure_sqlite_directory(config.database_url)
    try:
        db.migrate(engine)
    finally:
        engine.dispose()  # the workers make their own, after the fork
    options = {
        "bind": [f"fd://{sock.fileno()}"],
        "workers": workers,
        "worker_class": "sync",
        "proc_name": "devspace-server",
        "loglevel": config.log_level.lower(),
        # Off: it would log raw paths with their query strings, where OAuth codes travel.
        "accesslog": None,
        "logconfig_dict": logs.gunicorn_logconfig(config.log_level, config.log_format),
        "child_exit": _worker_exited,
        "timeout": 30,
        "graceful_timeout": 10,
        # gunicorn's control socket would be a second way in, under $HOME; we do not use it.
        "control_socket_disable": True,
        # Each worker builds its own app after the fork (no shared engine or connections).
        "preload_app": False,
    }
    log.info("serving %s with %d workers", config.public_url, workers)
    _Gunicorn(lambda: create_app(config), options).run()
