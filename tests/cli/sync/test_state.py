"""The ancestor on disk: round trips, incremental records, and distrust of anything odd."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from devspace.sync.errors import StateError
from devspace.sync.snapshot import DIRECTORY, Ancestor, Entry, Kind, Snapshot
from devspace.sync.state import AncestorStore, FolderKey, default_state_dir

KEY = FolderKey("alice-dev", "/home/alice/project", "/workspace")


def sample() -> Ancestor:
    local = Snapshot(
        {
            "src": DIRECTORY,
            "src/main.py": Entry(Kind.FILE, 12, 1_700_000_000_123_456_789, False, "", "sha256:a"),
            "run": Entry(Kind.FILE, 3, 5, None),
            "link": Entry(Kind.SYMLINK, target="src/main.py"),
        }
    )
    remote = Snapshot(
        {
            "src": DIRECTORY,
            "src/main.py": Entry(Kind.FILE, 12, 1_700_000_000_000_000_000, False),
            "run": Entry(Kind.FILE, 3, 5, True),
            "link": Entry(Kind.SYMLINK, target="src/main.py"),
        }
    )
    return Ancestor(local, remote)


def test_an_ancestor_round_trips_exactly(tmp_path: Path) -> None:
    with AncestorStore.for_folder(KEY, tmp_path) as store:
        store.save(sample())

    with AncestorStore.for_folder(KEY, tmp_path) as store:
        assert store.load() == sample()


def test_a_missing_state_is_an_empty_ancestor_and_creates_nothing(tmp_path: Path) -> None:
    with AncestorStore.for_folder(KEY, tmp_path / "state") as store:
        assert len(store.load()) == 0
    assert not (tmp_path / "state").exists()


def test_updates_record_and_forget_single_paths(tmp_path: Path) -> None:
    new = Entry(Kind.FILE, 1, 1, False)
    with AncestorStore.for_folder(KEY, tmp_path) as store:
        store.save(sample())
        store.update({"new": (new, new), "run": None})

    with AncestorStore.for_folder(KEY, tmp_path) as store:
        loaded = store.load()

    assert loaded == sample().updated({"new": (new, new), "run": None})


def test_each_folder_has_its_own_state(tmp_path: Path) -> None:
    other = FolderKey("alice-dev", "/home/alice/other", "/workspace")
    with AncestorStore.for_folder(KEY, tmp_path) as store:
        store.save(sample())

    with AncestorStore.for_folder(other, tmp_path) as store:
        assert len(store.load()) == 0


def corrupt_and_load(store_path: Path, damage: str | bytes) -> AncestorStore:
    with AncestorStore(store_path, KEY) as store:
        store.save(sample())
    if isinstance(damage, bytes):
        store_path.write_bytes(damage)
    else:
        with sqlite3.connect(store_path) as db:
            db.execute(damage)
        db.close()
    return AncestorStore(store_path, KEY)


@pytest.mark.parametrize(
    "damage",
    [
        b"this is not a database at all" * 100,
        b"",
        "PRAGMA user_version = 99",
        "UPDATE folder SET local_root = '/somewhere/else'",
        "UPDATE ancestor SET kind = 'x' WHERE path = 'run'",
        "UPDATE ancestor SET path = '../escape' WHERE path = 'run'",
        "UPDATE ancestor SET local_size = 'big' WHERE path = 'run'",
        "UPDATE ancestor SET remote_executable = 7 WHERE path = 'run'",
        "DROP TABLE ancestor",
    ],
)
def test_a_state_that_cannot_be_trusted_is_no_ancestor_and_is_kept_aside(
    tmp_path: Path, damage: str | bytes
) -> None:
    path = tmp_path / "state.sqlite3"

    with corrupt_and_load(path, damage) as store:
        assert len(store.load()) == 0
        assert store.quarantined is not None
        assert store.quarantined.exists()
        assert not path.exists()
        store.save(sample())  # and the next pass starts afresh

    with AncestorStore(path, KEY) as store:
        assert store.load() == sample()


@pytest.mark.parametrize("damage", [b"garbage" * 1000, "PRAGMA user_version = 99"])
def test_saving_over_a_foreign_file_moves_it_aside_first(
    tmp_path: Path, damage: str | bytes
) -> None:
    path = tmp_path / "state #1?%.sqlite3"  # characters a file: URI would need escaped
    with corrupt_and_load(path, damage) as store:
        store.save(sample())
        assert store.quarantined is not None

    with AncestorStore(path, KEY) as store:
        assert store.load() == sample()


def test_an_unwritable_state_directory_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the directory should be")

    with (
        AncestorStore(tmp_path / "blocker" / "state.sqlite3", KEY) as store,
        pytest.raises(StateError, match="cannot record"),
    ):
        store.save(sample())


def test_the_state_directory_follows_the_platform_and_the_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEVSPACE_STATE_DIR", str(tmp_path))
    assert default_state_dir() == tmp_path
    monkeypatch.delenv("DEVSPACE_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_state_dir() == tmp_path / "xdg" / "devspace"
    assert KEY.file_name().endswith(".sqlite3")
    assert KEY.file_name() == FolderKey(*KEY.astuple()).file_name()


def test_a_scope_reads_only_its_subtrees_and_the_directories_above(tmp_path: Path) -> None:
    file = Entry(Kind.FILE, 1, 1, False)
    directories = ["src", "src/sub", "src/sub-old"]
    files = ["src/sub/x", "src/sub-old/y", "src/subx", "run"]
    pairs = dict.fromkeys(directories, (DIRECTORY, DIRECTORY)) | dict.fromkeys(files, (file, file))
    with AncestorStore.for_folder(KEY, tmp_path) as store:
        store.save(Ancestor().updated(pairs))
        cut = store.within(["src/sub", "missing/deeper"])
        assert cut is not None
        # "src/sub-old" and "src/subx" sort between "src/sub" and "src/sub/": not below it.
        assert sorted(cut.local) == ["src", "src/sub", "src/sub/x"]
        assert cut.remote["src/sub/x"] == file
        assert store.tops() == {"src", "run"}


def test_a_scope_of_a_missing_or_untrusted_store(tmp_path: Path) -> None:
    with AncestorStore.for_folder(KEY, tmp_path / "none") as store:
        assert store.within(["a"]) == Ancestor()
        assert store.tops() == set()
    path = tmp_path / "state.sqlite3"
    with corrupt_and_load(path, "PRAGMA user_version = 99") as store:
        assert store.within(["run"]) is None
    with corrupt_and_load(path, b"garbage" * 1000) as store:
        assert store.within(["run"]) is None
        assert store.tops() is None
    assert path.exists()  # a full pass's `load` decides what becomes of it
