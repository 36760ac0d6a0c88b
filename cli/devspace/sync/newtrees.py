"""New folders sent whole: a folder the pod lacks, with all it holds, put in place at once.

A tar stream writes each new file to a temporary name and then puts it in place, and on a
first sync putting 10,000 files in place cost the pod as much as extracting them (0.15 s of
kernel time each, measured here). A folder that is new in the pod, and whose content is all
new, can instead be extracted under one temporary name beside it with its files under their
own names, and renamed into place in one step: its files appear all at once, complete, and
only one name is put in place instead of one per file (see `tarstream` for the step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from devspace.sync.operations import MakeDir, Operation, Upload
from devspace.sync.snapshot import ancestors, parent


@dataclass
class NewTree:
    """A new folder (`top`) and everything planned below it: folders and small new files.

    `temporary` is the name it is extracted under, beside where it goes.
    """

    top: MakeDir
    folders: list[MakeDir] = field(default_factory=list)
    files: list[Upload] = field(default_factory=list)
    temporary: str = ""

    @property
    def operations(self) -> list[MakeDir | Upload]:
        """Every operation the tree carries out, its top first."""
        return [self.top, *self.folders, *self.files]

    def inside(self, path: str) -> str:
        """`path` (below `top`) as it is named while the tree is under its temporary name."""
        return self.temporary + path[len(self.top.path) :]


def new_trees(ops: Sequence[Operation], *, small: int, most: int) -> list[NewTree]:
    """The outermost new folders among `ops` that can be sent whole.

    A folder can be if the pod has nothing at its path and every operation below it makes a
    folder or uploads a new file of at most `small` bytes (a link, a mode change or a large
    file goes its usual way, and so does the folder holding it). A folder with more than
    `most` files is not sent whole (streams share the work, and one tree is one stream's),
    but its new subfolders may be. A folder with no file to send gains nothing and is left out.
    """
    new = {op.path: NewTree(op) for op in ops if isinstance(op, MakeDir) and op.replaces is None}
    if not new:
        return []
    unsuitable: set[str] = set()
    for op in ops:
        folder = op if isinstance(op, MakeDir) and op.replaces is None else None
        file = op if isinstance(op, Upload) and op.replaces is None else None
        if file and file.source.size > small:
            file = None
        up = parent(op.path)
        while up:
            tree = new.get(up)
            if tree is not None:
                if file:
                    tree.files.append(file)
                elif folder:
                    tree.folders.append(folder)
                else:
                    unsuitable.add(up)
            up = parent(up)
    chosen: list[NewTree] = []
    taken: set[str] = set()
    for path in sorted(new):  # parents before their children
        tree = new[path]
        if path in unsuitable or not tree.files or len(tree.files) > most:
            continue
        if ancestors([path]) & taken:
            continue
        taken.add(path)
        chosen.append(tree)
    return chosen
