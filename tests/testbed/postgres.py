"""A private PostgreSQL server for the tests: Debian's binaries, a fresh cluster per run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from testbed.process import Process, StartError, free_port, wait_until

_USER = "devspace"


def _bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if not candidates:
        raise StartError("PostgreSQL is not installed (apt-get install postgresql)")
    return candidates[0].parent


def _os_user() -> str | None:
    # PostgreSQL refuses to run as root; Debian's package provides the `postgres` account.
    return "postgres" if os.geteuid() == 0 else None


@dataclass
class PostgresServer:
    """A running server; `url` is a SQLAlchemy/psycopg URL for its `devspace` database."""

    directory: Path
    port: int
    process: Process

    @property
    def url(self) -> str:
        """The database URL (trust authentication on loopback; a throwaway cluster)."""
        return f"postgresql+psycopg://{_USER}@127.0.0.1:{self.port}/{_USER}"

    @property
    def dsn(self) -> str:
        """A libpq connection string for psycopg."""
        return f"host=127.0.0.1 port={self.port} user={_USER} dbname={_USER}"

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb a new cluster in a temporary directory, start it, create the database."""
        bindir, user = _bindir(), _os_user()
        # Not under pytest's tmp_path: that is private to root and `postgres` must enter it.
        directory = Path(tempfile.mkdtemp(prefix="devspace-pg-"))
        if user:
            shutil.chown(directory, user, user)
        data = directory / "data"
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                _USER,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        port = free_port()
        process = Process(
            "postgres",
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(directory),
                "-c",
                "listen_addresses=127.0.0.1",
                # A test database is thrown away; durability only costs time.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            directory / "postgres.log",
            user=user,
        )
        server = cls(directory, port, process)
        try:
            wait_until(server._accepts, what="postgres", timeout=30, process=process)
            server._psql(f"CREATE DATABASE {_USER}")
        except BaseException:
            server.stop()
            raise
        return server

    def _psql(self, sql: str, database: str = "postgres") -> None:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=_USER, dbname=database, autocommit=True
        ) as conn:
            conn.execute(sql.encode())

    def _accepts(self) -> bool:
        self._psql("SELECT 1")
        return True

    def stop(self) -> None:
        """Stop the server and delete its cluster."""
        self.process.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
