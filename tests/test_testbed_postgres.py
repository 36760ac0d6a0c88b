"""The test bed's PostgreSQL is a real, private server that the tests can use."""

from __future__ import annotations

import psycopg
import pytest

from testbed.postgres import PostgresServer

pytestmark = pytest.mark.postgres


def test_postgres_round_trips_data_over_loopback(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        conn.execute("CREATE TABLE greeting (word text)")
        conn.execute("INSERT INTO greeting VALUES ('hello')")
        assert conn.execute("SELECT word FROM greeting").fetchall() == [("hello",)]
    assert version is not None
    assert int(version[0].split(".")[0]) >= 15
    assert postgres.url.startswith("postgresql+psycopg://devspace@127.0.0.1:")
