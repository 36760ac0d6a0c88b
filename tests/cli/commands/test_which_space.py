"""Which space a command means when none is named: the project's, else the chosen default."""

from __future__ import annotations

from pathlib import Path

import pytest

from devspace.commands.common import which_space
from devspace.config import Settings
from devspace.errors import UsageError

SERVER = "https://devspace.example.com"


def test_a_named_space_wins_then_the_project_then_the_default(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Settings(default_server=SERVER, default_spaces={SERVER: "chosen"}).save()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert which_space(SERVER, None) == "chosen"

    project = tmp_path / "app"
    (project / "src").mkdir(parents=True)
    (project / "devspace.yaml").write_text("name: web\nimage: debian:12\n")
    monkeypatch.chdir(project / "src")  # found in a folder above, as `up` finds it
    assert which_space(SERVER, None) == "web"
    assert which_space(SERVER, "other") == "other"


def test_no_space_at_all_says_how_to_choose_one(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"devspace\.yaml.*spaces use"):
        which_space(SERVER, None)


def test_a_broken_project_file_is_reported_not_skipped(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "devspace.yaml").write_text("name: [not, a, name]\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"devspace\.yaml:1"):
        which_space(SERVER, None)
