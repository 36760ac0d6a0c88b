"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, MetaData, String, inspect

from devspace_server import db
from devspace_server.errors import DatabaseNotMigrated
from devspace_server.models import Base

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(empty_database_url)
    yield engine
    engine.dispose()


def schema_diff(engine: Engine, metadata: MetaData = Base.metadata) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrations_produce_exactly_the_models_schema(engine: Engine) -> None:
    db.migrate(engine)
    assert schema_diff(engine) == []


def test_the_comparison_would_notice_a_difference(engine: Engine) -> None:
    db.migrate(engine)
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["users"].append_column(Column("nickname", String(20)))
    assert [d[0] for d in schema_diff(engine, drifted)] == ["add_column"]


def test_migrations_go_down_and_up_again_and_are_idempotent(engine: Engine) -> None:
    db.migrate(engine)
    db.migrate(engine)  # already at head: nothing to do
    db.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    db.migrate(engine)
    assert schema_diff(engine) == []
    with db.connect(engine) as connection:
        assert db.current_revision(connection) == db.head_revision()


def test_an_unmigrated_database_is_named_with_what_to_run(engine: Engine) -> None:
    with pytest.raises(DatabaseNotMigrated, match=r"is empty.*run `devspace-server migrate`"):
        db.require_current_schema(engine)
    db.migrate(engine)
    db.require_current_schema(engine)


def test_a_wheel_ships_the_migrations_templates_and_styles(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("devspace-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {
        "devspace_server/migrations/env.py",
        "devspace_server/migrations/script.py.mako",
        "devspace_server/migrations/versions/0001_initial.py",
        "devspace_server/templates/login.html",
        "devspace_server/static/style.css",
    } <= names
