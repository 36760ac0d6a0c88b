"""The reconciler's heartbeat rows and the verdict the API reads from them (on SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from devspace_server import db
from devspace_server.models import ReconcilerHeartbeat
from devspace_server.reconcile.heartbeat import (
    GONE_AFTER,
    UNREACHABLE_AFTER,
    Heartbeat,
    Reachability,
    cluster_health,
)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'devspace.db'}")
    db.migrate(engine)
    yield db.make_sessionmaker(engine)
    engine.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def verdict(sessions: sessionmaker[Session], at: datetime) -> tuple[Reachability, str]:
    with sessions() as session:
        health = cluster_health(session, at)
    return health.state, health.message


def test_no_heartbeat_says_no_reconciler_runs(sessions: sessionmaker[Session]) -> None:
    state, message = verdict(sessions, NOW)
    assert state is Reachability.NO_RECONCILER
    assert "No reconciler has reported yet" in message


def test_a_leader_in_contact_is_ok_and_its_row_is_updated_in_place(
    sessions: sessionmaker[Session],
) -> None:
    clock, leading = Clock(), [False]
    beat = Heartbeat(sessions, "replica-a", leading=lambda: leading[0], clock=clock)
    beat.contact(True, None)
    beat.write()
    assert verdict(sessions, NOW)[0] is Reachability.NO_LEADER
    leading[0] = True
    clock.now += timedelta(seconds=2)
    beat.write()
    assert verdict(sessions, clock.now) == (Reachability.OK, "The reconciler reaches the cluster.")
    with sessions() as session:
        (row,) = session.query(ReconcilerHeartbeat).all()
    assert (row.identity, row.leader, row.contacted_at, row.beat_at) == (
        "replica-a",
        True,
        NOW,
        clock.now,
    )


def test_a_live_reconciler_without_contact_says_since_when(
    sessions: sessionmaker[Session],
) -> None:
    clock = Clock()
    beat = Heartbeat(sessions, "replica-a", leading=lambda: True, clock=clock)
    beat.contact(True, None)
    beat.write()
    # The API server stops answering; the reconciler keeps beating.
    clock.now = NOW + UNREACHABLE_AFTER + timedelta(seconds=1)
    beat.contact(False, "reading lease devspace/devspace-reconciler: connection refused")
    beat.write()
    state, message = verdict(sessions, clock.now)
    assert state is Reachability.UNREACHABLE
    assert "has not been reachable since 2026-11-26 12:00:00 UTC" in message
    assert "connection refused" in message
    # Contact again: ok at once.
    beat.contact(True, None)
    beat.write()
    assert verdict(sessions, clock.now)[0] is Reachability.OK


def test_never_reached_is_said_so(sessions: sessionmaker[Session]) -> None:
    beat = Heartbeat(sessions, "replica-a", leading=lambda: False, clock=Clock())
    beat.contact(False, "connection refused")
    beat.write()
    state, message = verdict(sessions, NOW)
    assert state is Reachability.UNREACHABLE
    assert "has never been reachable" in message


def test_a_silent_reconciler_is_gone(sessions: sessionmaker[Session]) -> None:
    beat = Heartbeat(sessions, "replica-a", leading=lambda: True, clock=Clock())
    beat.contact(True, None)
    beat.write()
    later = NOW + GONE_AFTER + timedelta(seconds=1)
    state, message = verdict(sessions, later)
    assert state is Reachability.NO_RECONCILER
    assert "No reconciler has reported since 2026-11-26 12:00:00 UTC" in message
