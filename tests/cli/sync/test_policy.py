"""Ignore rules, one-way excludes, and which names and links sync accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from devspace.sync.policy import (
    DEFAULT_IGNORES,
    LINUX,
    MACOS,
    TEMPORARY_PREFIX,
    WINDOWS,
    DirectionRules,
    IgnoreRules,
    NameRules,
    path_problem,
    refused_names,
    symlink_problem,
    unsyncable_name,
)
from devspace.sync.snapshot import Side


@pytest.mark.parametrize(
    ("path", "is_dir"),
    [
        (".git", True),
        ("sub/.git", True),
        ("node_modules", True),
        ("web/node_modules", True),
        ("pkg/__pycache__", True),
        (".venv", True),
        (".DS_Store", False),
        ("src/.main.py.swp", False),
        ("notes.txt~", False),
        ("4913", False),
    ],
)
def test_defaults_ignore_vcs_metadata_platform_builds_and_editor_litter(
    path: str, is_dir: bool
) -> None:
    assert IgnoreRules().ignores(path, is_dir)


@pytest.mark.parametrize(
    ("path", "is_dir"),
    [("src/main.py", False), (".gitignore", False), (".github", True), (".env", False)],
)
def test_defaults_keep_what_a_project_needs(path: str, is_dir: bool) -> None:
    assert not IgnoreRules().ignores(path, is_dir)


def test_a_directory_pattern_does_not_ignore_a_file_of_that_name() -> None:
    assert not IgnoreRules().ignores("node_modules", is_dir=False)


def test_user_rules_bring_a_default_back_and_win_over_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text(".env\n*.log\n")
    (tmp_path / ".devspaceignore").write_text("!.env\n")

    rules = IgnoreRules.load(tmp_path, extra=["!.git/", "secret/"])

    assert not rules.ignores(".env", False)
    assert rules.ignores("app.log", False)
    assert not rules.ignores(".git", True)
    assert rules.ignores("secret", True)


def test_gitignore_can_be_switched_off(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.log\n")

    rules = IgnoreRules.load(tmp_path, use_gitignore=False)

    assert not rules.ignores("app.log", False)
    assert rules.with_gitignore("sub", ["*"]).ignores("sub/x", False) is False


def test_the_deepest_gitignore_decides_and_patterns_are_relative_to_it() -> None:
    rules = IgnoreRules(gitignores={"": ["*.log", "/build/"], "web": ["!debug.log", "/build/"]})

    assert rules.ignores("x.log", False)
    assert not rules.ignores("web/debug.log", False)
    assert rules.ignores("web/other.log", False)
    assert rules.ignores("build", True)
    assert rules.ignores("web/build", True)
    assert not rules.ignores("lib/build", True)


def test_sync_temporary_files_are_ignored_whatever_the_user_says() -> None:
    rules = IgnoreRules(["!*"], defaults=())

    assert rules.ignores(f"src/{TEMPORARY_PREFIX}main.py.1234", False)


def test_odd_patterns_do_not_warn() -> None:
    rules = IgnoreRules(["[[]x]*/"])  # filterwarnings=error would fail on a FutureWarning

    assert rules.ignores("[x]*", is_dir=True)
    assert not DirectionRules(no_upload=["[[]y]"]).may_write(Side.REMOTE, "[y]", is_dir=False)


def test_defaults_can_be_replaced_entirely() -> None:
    assert ".git/" in DEFAULT_IGNORES
    assert not IgnoreRules(defaults=()).ignores(".git", True)


def test_one_way_rules_protect_one_side_only() -> None:
    rules = DirectionRules(no_upload=["dist/"], no_download=["*.secret"])

    assert not rules.may_write(Side.REMOTE, "dist", is_dir=True)
    assert not rules.may_write(Side.REMOTE, "dist/app.js", is_dir=False)
    assert rules.may_write(Side.LOCAL, "dist/app.js", is_dir=False)
    assert not rules.may_write(Side.LOCAL, "conf/db.secret", is_dir=False)
    assert rules.may_write(Side.REMOTE, "conf/db.secret", is_dir=False)
    assert DirectionRules().may_write(Side.REMOTE, "anything", is_dir=False)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("CON", "reserved"),
        ("con.txt", "reserved"),
        ("Lpt1.log", "reserved"),
        ("COM¹", "reserved"),
        ("a:b", "characters"),
        ('say"hi"', "characters"),
        ("what?", "characters"),
        ("tab\there", "characters"),
        ("trailing.", "dot or a space"),
        ("trailing ", "dot or a space"),
        ("x" * 256, "255 characters"),
    ],
)
def test_windows_refuses_reserved_names_characters_and_long_names(name: str, fragment: str) -> None:
    problem = WINDOWS.name_problem(name)
    assert problem is not None
    assert fragment in problem


@pytest.mark.parametrize("name", ["console", "CONIN", "a.b.c", "x" * 255, "日本語" * 85, "ñ"])
def test_windows_accepts_ordinary_names(name: str) -> None:
    assert WINDOWS.name_problem(name) is None


def test_posix_systems_limit_names_to_255_bytes() -> None:
    assert LINUX.name_problem("é" * 127) is None
    assert LINUX.name_problem("é" * 128) == "the name is longer than 255 bytes"
    assert MACOS.name_problem("a:b") is None
    assert LINUX.name_problem("bad-\udce9") == "the name is not valid UTF-8"


def test_platform_rules() -> None:
    assert NameRules.for_platform("win32") is WINDOWS
    assert NameRules.for_platform("darwin") is MACOS
    assert NameRules.for_platform("linux") is LINUX
    assert MACOS.fold("README") == MACOS.fold("readme")
    assert MACOS.fold("e\u0301") == MACOS.fold("\u00e9")
    assert LINUX.fold("README") != LINUX.fold("readme")


def test_case_twins_are_refused_on_a_case_insensitive_side_only() -> None:
    present = ["README", "src", "src/Main.java"]

    refused = refused_names(
        present, created=["readme", "src/main.java", "new", "NEW"], removed=(), rules=MACOS
    )

    assert set(refused) == {"readme", "src/main.java", "new", "NEW"}
    assert "'README'" in refused["readme"]
    assert refused_names(present, created=["readme"], removed=(), rules=LINUX) == {}


def test_a_case_only_rename_is_not_a_collision() -> None:
    assert refused_names(["readme"], created=["README"], removed={"readme"}, rules=MACOS) == {}


def test_reserved_names_are_refused_where_they_would_be_created() -> None:
    refused = refused_names([], created=["src/aux.c", "ok.c"], removed=(), rules=WINDOWS)

    assert set(refused) == {"src/aux.c"}


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("ok/fine.txt", None),
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../up", "'..'"),
        ("a/./b", "'..'"),
        ("a//b", "'..'"),
        ("a/", "'..'"),
        ("a\0b", "NUL"),
    ],
)
def test_path_problems(path: str, problem: str | None) -> None:
    found = path_problem(path)
    assert found == problem if problem is None else problem in (found or "")


def test_unsyncable_names() -> None:
    assert unsyncable_name("fine name.txt") is None
    assert "backslash" in (unsyncable_name("a\\b") or "")
    assert "UTF-8" in (unsyncable_name("\udcff") or "")


@pytest.mark.parametrize(
    ("path", "target", "inside"),
    [
        ("link", "file", True),
        ("link", ".", True),
        ("a/b/link", "../../file", True),
        ("a/b/link", "../../../file", False),
        ("a/link", "b/../../file", True),
        ("a/link", "b/../../../file", False),
        ("link", "/etc/passwd", False),
        ("link", "..", False),
        ("link", "", False),
        ("link", "..\\..\\x", False),
        ("a/link", "./../a/./x", True),
    ],
)
def test_links_are_synced_only_when_they_stay_inside_the_root(
    path: str, target: str, inside: bool
) -> None:
    assert (symlink_problem(path, target) is None) is inside
