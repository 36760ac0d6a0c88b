"""Watchers and scopes without a pod: coalescing, inotifywait's records, watchdog on a real
folder, and which subtrees a batch of paths asks for."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from devspace.sync.podwatch import _paths
from devspace.sync.scope import scopes_of
from devspace.sync.snapshot import Side
from devspace.sync.watch import Batch, Changes, LocalWatcher


def test_events_are_coalesced_until_quiet() -> None:
    changes = Changes(quiet=0.05, longest=1.0)
    changes.add(Side.LOCAL, ["a.txt"])

    def later() -> None:
        time.sleep(0.02)
        changes.add(Side.REMOTE, ["b.txt"])

    threading.Thread(target=later).start()
    batch = changes.take(timeout=2)

    assert batch is not None
    assert (batch.local, batch.remote, batch.full) == ({"a.txt"}, {"b.txt"}, False)
    assert changes.take(timeout=0.01) is None


def test_a_writer_that_never_pauses_still_gets_batches() -> None:
    changes = Changes(quiet=0.05, longest=0.1)
    stop = threading.Event()

    def busy() -> None:
        n = 0
        while not stop.is_set():
            changes.add(Side.LOCAL, [f"f{n}"])
            n += 1
            time.sleep(0.005)

    threading.Thread(target=busy, daemon=True).start()
    started = time.monotonic()
    batch = changes.take(timeout=2)
    stop.set()
    assert batch is not None
    assert batch.local
    assert time.monotonic() - started < 0.5


def test_an_event_that_ends_a_write_shortens_the_wait() -> None:
    # Were the ended write ignored, `take` would wait out the 60 s of quiet.
    changes = Changes(quiet=60, settled=0.001, longest=120)
    changes.add(Side.LOCAL, ["a.txt"])
    changes.add(Side.LOCAL, ["a.txt"], finished=True)
    taken: list[Batch | None] = []
    taker = threading.Thread(target=lambda: taken.append(changes.take()), daemon=True)
    taker.start()
    taker.join(10)
    assert taken, "the batch was not taken"
    assert taken[0] is not None
    assert taken[0].local == {"a.txt"}


def test_a_burst_asks_for_a_full_pass() -> None:
    changes = Changes(quiet=0.001, burst_limit=100)
    changes.add(Side.REMOTE, [f"f{n}" for n in range(101)])
    batch = changes.take(timeout=1)
    assert batch is not None
    assert batch.full
    assert "burst" in batch.reasons[0]


def test_inotifywait_records_become_paths() -> None:
    records = [
        b"CREATE ./src/app.py",
        b"CLOSE_WRITE,CLOSE ./src/app.py",
        b"ATTRIB,ISDIR ./src",  # a directory's own metadata: not synced
        b"CREATE ./.devspace-tmp-1234",  # sync's own temporary file
        b"CREATE ./src/.devspace-tmp-5678/lib/a.py",  # in a new folder it is still filling
        b"MOVED_TO ./new\nline",
        b"ATTRIB,ISDIR ./",  # the root's metadata
        b"DELETE_SELF ./",  # the root itself went away
    ]
    assert _paths(records) == (["src/app.py", "src/app.py", "new\nline", ""], False)
    # The kernel dropped events: inotifywait says so with a record that names no path.
    assert _paths([b"CREATE ./a", b"Q_OVERFLOW ", b"CREATE ./b"]) == (["a", "b"], True)


def test_scopes_are_the_fewest_subtrees_and_rules_files_ask_for_everything() -> None:
    assert scopes_of(["a/b/c", "a/b", "d", "a/bc"]) == ["d", "a/b", "a/bc"]
    assert scopes_of(["src/.gitignore"]) is None
    assert scopes_of(["../escape"]) is None
    assert scopes_of([f"d{n}" for n in range(201)]) is None
    assert scopes_of([]) == []


@pytest.mark.timeout(30)
def test_the_laptop_watcher_reports_edits_moves_and_deletes(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    changes = Changes(quiet=0.05)
    watcher = LocalWatcher(tmp_path, changes)
    watcher.start()
    try:
        assert watcher.alive
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "new.txt").write_text("new")
        (tmp_path / "old.txt").rename(tmp_path / "sub" / "moved.txt")
        seen: set[str] = set()
        deadline = time.monotonic() + 10
        while not {"sub", "sub/new.txt", "old.txt", "sub/moved.txt"} <= seen:
            assert time.monotonic() < deadline, seen
            batch = changes.take(timeout=1)
            if batch is not None:
                seen |= batch.local
    finally:
        watcher.stop()
    assert not watcher.alive


def test_a_watch_that_cannot_start_is_reported_not_raised(tmp_path: Path) -> None:
    watcher = LocalWatcher(tmp_path / "missing", Changes())
    watcher.start()
    assert watcher.failed is not None
    assert not watcher.alive
    watcher.stop()
