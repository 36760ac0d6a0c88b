"""Which new folders a tar stream sends whole (`newtrees`), and how streams share the work.

The sidecar tests (test_new_trees_sshd.py) put such folders in place in a real pod.
"""

from __future__ import annotations

from devspace.sync.newtrees import NewTree, new_trees
from devspace.sync.operations import MakeDir, MakeSymlink, Operation, SetMode, Upload
from devspace.sync.podstream import shares
from devspace.sync.snapshot import Entry, Kind, Side

SMALL = 1 << 20


def folder(path: str, replaces: Entry | None = None) -> MakeDir:
    return MakeDir(Side.REMOTE, path, replaces)


def upload(path: str, size: int = 10, replaces: Entry | None = None) -> Upload:
    return Upload(path, Entry(Kind.FILE, size, 0, False), replaces)


def chosen(ops: list[Operation], most: int = 1000) -> dict[str, list[str]]:
    """Each tree sent whole: its top, and the paths of everything it carries."""
    return {
        tree.top.path: [op.path for op in tree.operations]
        for tree in new_trees(ops, small=SMALL, most=most)
    }


def test_the_outermost_new_folder_carries_everything_below_it() -> None:
    ops: list[Operation] = [
        folder("a"),
        folder("a/b"),
        upload("a/x.txt"),
        upload("a/b/y.txt"),
        upload("top.txt"),
    ]

    assert chosen(ops) == {"a": ["a", "a/b", "a/x.txt", "a/b/y.txt"]}


def test_a_link_a_mode_change_or_a_large_file_keeps_its_folders_from_going_whole() -> None:
    file = Entry(Kind.FILE, 1, 0, False)
    for odd in (
        MakeSymlink(Side.REMOTE, "a/b/link", "x.txt", None),
        SetMode(Side.REMOTE, "a/b/run.sh", True, file),
        upload("a/b/big.bin", SMALL + 1),
    ):
        ops: list[Operation] = [
            folder("a"),
            upload("a/x.txt"),
            folder("a/b"),
            upload("a/b/y.txt"),
            folder("a/c"),
            upload("a/c/z.txt"),
            odd,
        ]

        # a and a/b go their usual way; a/c, a new folder beside them, can still go whole.
        assert chosen(ops) == {"a/c": ["a/c", "a/c/z.txt"]}, odd


def test_a_folder_that_replaces_a_file_is_not_new() -> None:
    was = Entry(Kind.FILE, 3, 0, False)
    ops: list[Operation] = [folder("a", replaces=was), upload("a/x.txt")]

    assert chosen(ops) == {}


def test_a_folder_with_more_files_than_a_streams_share_goes_by_its_subfolders() -> None:
    ops: list[Operation] = [folder("a"), upload("a/x.txt")]
    for sub in ("b", "c"):
        ops += [folder(f"a/{sub}"), *(upload(f"a/{sub}/{n}.txt") for n in range(3))]

    assert list(chosen(ops, most=6)) == ["a/b", "a/c"]
    assert list(chosen(ops, most=7)) == ["a"]


def test_a_folder_without_files_is_left_to_mkdir() -> None:
    assert chosen([folder("empty"), folder("empty/inner")]) == {}


def test_inside_names_a_path_under_the_temporary_name() -> None:
    tree = NewTree(folder("src/app"), temporary="src/.devspace-tmp-x-1")

    assert tree.inside("src/app/lib/a.py") == "src/.devspace-tmp-x-1/lib/a.py"


def test_streams_share_files_evenly_and_a_tree_stays_whole() -> None:
    big = NewTree(folder("a"), files=[upload(f"a/{n}") for n in range(100)])
    small = NewTree(folder("b"), files=[upload(f"b/{n}") for n in range(30)])
    loose = [upload(f"f{n}") for n in range(70)]

    cut = shares(loose, [big, small], 2, 64)

    assert [[t.top.path for t in trees] for _, trees in cut] == [["a"], ["b"]]
    assert [len(files) for files, _ in cut] == [0, 70]


def test_too_few_files_for_two_streams_go_as_one() -> None:
    tree = NewTree(folder("a"), files=[upload(f"a/{n}") for n in range(40)])

    cut = shares([upload(f"f{n}") for n in range(40)], [tree], 2, 64)

    assert len(cut) == 1
    assert [len(cut[0][0]), len(cut[0][1])] == [40, 1]
