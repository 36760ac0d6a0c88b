"""What sync may touch: ignore rules, one-way excludes, and which names can exist where.

Ignore rules have `.gitignore` semantics (pathspec's `GitIgnoreSpec`) and come in layers; the
first layer that has an opinion about a path decides:

1. sync's own temporary files (always ignored, cannot be overridden);
2. the user's rules: `.devspaceignore` at the root, then the `sync.ignore` list of
   `devspace.yaml` (later lines win, so `!node_modules/` there brings a default back);
3. `.gitignore` files, the deepest first, each relative to its own directory;
4. `DEFAULT_IGNORES`.

One set of rules, built from the laptop's files, filters both sides: if each side were filtered
by its own `.gitignore`, a path hidden on one side only would look deleted there.
"""

from __future__ import annotations

import re
import sys
import unicodedata
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

from devspace.sync.snapshot import Side, parent

# Defaults a demanding user would pick. Each is overridable with a `!pattern` line in
# `.devspaceignore` or devspace.yaml.
DEFAULT_IGNORES: tuple[str, ...] = (
    # Version-control metadata: two writers corrupt a live repository (index, lock files and
    # packs are rewritten on both sides at once). Run git on one side.
    ".git/",
    ".hg/",
    ".svn/",
    # Dependencies and bytecode built for one platform; the laptop's do not run in the pod.
    "node_modules/",
    "__pycache__/",
    ".venv/",
    # Operating-system and editor litter that churns on every save.
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "desktop.ini",
    "*.swp",
    "*.swx",
    "*~",
    ".#*",
    "4913",
)

# Sync writes a temporary file beside the target and renames it into place; the other side's
# watcher must never pick one up.
TEMPORARY_PREFIX = ".devspace-tmp-"

IGNORE_FILE = ".devspaceignore"
GITIGNORE = ".gitignore"


class _Layer:
    """One ordered list of patterns; `check` says ignored (True), kept (False) or no opinion."""

    __slots__ = ("_prefilter", "_spec")

    def __init__(self, lines: Iterable[str]) -> None:
        # A pattern like `[[]` makes `re` warn about a future change; the user can do nothing
        # about it and must not see a Python warning for their .gitignore.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self._spec = GitIgnoreSpec.from_lines(list(lines))
            regexes = [
                re.sub(r"\(\?P<[A-Za-z_]\w*>", "(?:", p.regex.pattern)
                for p in self._spec.patterns
                if p.include is not None and p.regex is not None
            ]
            # Most paths match no pattern. One combined regex answers that in one call; the
            # exact gitignore semantics (last match, negation) are computed only on a match.
            try:
                self._prefilter: re.Pattern[str] | None = re.compile("|".join(regexes) or "(?!)")
            except re.error:  # pragma: no cover - pathspec's regexes always combine
                self._prefilter = None

    def check(self, key: str) -> bool | None:
        if self._prefilter is not None and self._prefilter.match(key) is None:
            return None
        return self._spec.check_file(key).include


class IgnoreRules:
    """The ignore policy for one sync root. Immutable; `with_gitignore` returns a new one."""

    __slots__ = ("_defaults", "_gitignores", "_source", "_user", "use_gitignore")

    def __init__(
        self,
        user: Sequence[str] = (),
        *,
        gitignores: Mapping[str, Sequence[str]] | None = None,
        defaults: Sequence[str] = DEFAULT_IGNORES,
        use_gitignore: bool = True,
    ) -> None:
        """Rules from the user's patterns, `.gitignore` contents keyed by directory, defaults.

        `gitignores` maps a directory (`""` for the root) to its `.gitignore` lines; with
        `use_gitignore` false they are not consulted and the scan does not look for more.
        """
        self.use_gitignore = use_gitignore
        files: dict[str, tuple[str, ...]] = (
            {d: tuple(lines) for d, lines in (gitignores or {}).items()} if use_gitignore else {}
        )
        self._source: tuple[tuple[str, ...], dict[str, tuple[str, ...]], tuple[str, ...]] = (
            tuple(user),
            files,
            tuple(defaults),
        )
        self._user = _Layer(user)
        self._defaults = _Layer(defaults)
        self._gitignores = {d: _Layer(lines) for d, lines in files.items()}

    @classmethod
    def load(
        cls,
        root: Path,
        extra: Sequence[str] = (),
        *,
        defaults: Sequence[str] = DEFAULT_IGNORES,
        use_gitignore: bool = True,
    ) -> IgnoreRules:
        """Rules from `root`'s `.devspaceignore` and `.gitignore` plus `extra` (devspace.yaml).

        Nested `.gitignore` files are added by the scan as it meets them. Missing files count
        as empty. Raises OSError if a file exists but cannot be read.
        """
        user = [*_read_lines(root / IGNORE_FILE), *extra]
        gitignores = {"": _read_lines(root / GITIGNORE)} if use_gitignore else {}
        return cls(user, gitignores=gitignores, defaults=defaults, use_gitignore=use_gitignore)

    def with_gitignore(self, directory: str, lines: Sequence[str]) -> IgnoreRules:
        """These rules plus the `.gitignore` found in `directory` (relative to the root)."""
        if not self.use_gitignore:
            return self
        # Copy rather than rebuild: compiling every layer again for each nested file found
        # would make a scan quadratic in the number of `.gitignore` files.
        extended = IgnoreRules.__new__(IgnoreRules)
        extended.use_gitignore = self.use_gitignore
        user, gitignores, defaults = self._source
        extended._source = (user, {**gitignores, directory: tuple(lines)}, defaults)
        extended._user = self._user
        extended._defaults = self._defaults
        extended._gitignores = {**self._gitignores, directory: _Layer(lines)}
        return extended

    @property
    def gitignores(self) -> Mapping[str, Sequence[str]]:
        """The `.gitignore` contents in effect, keyed by directory."""
        return self._source[1]

    def ignores(self, path: str, is_dir: bool) -> bool:
        """Whether sync leaves `path` (and, for a directory, everything in it) alone."""
        name = path.rpartition("/")[2]
        if name.startswith(TEMPORARY_PREFIX):
            return True
        key = path + "/" if is_dir else path
        verdict = self._user.check(key)
        if verdict is not None:
            return verdict
        if self._gitignores:
            directory = parent(path)
            while True:
                layer = self._gitignores.get(directory)
                if layer is not None:
                    verdict = layer.check(key[len(directory) + 1 :] if directory else key)
                    if verdict is not None:
                        return verdict
                if not directory:
                    break
                directory = parent(directory)
        return bool(self._defaults.check(key))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IgnoreRules):
            return NotImplemented
        return self._source == other._source and self.use_gitignore == other.use_gitignore

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"IgnoreRules({len(self._source[0])} user patterns, {len(self._gitignores)} .gitignore)"
        )


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except FileNotFoundError:
        return []


class DirectionRules:
    """One-way excludes: paths sync never writes on one side (gitignore patterns, from the root).

    `no_upload` paths are never written in the pod (the laptop's changes to them stay local,
    the pod's still come down); `no_download` paths are never written on the laptop.
    """

    __slots__ = ("_no_download", "_no_upload")

    def __init__(self, no_upload: Sequence[str] = (), no_download: Sequence[str] = ()) -> None:
        self._no_upload = _spec(no_upload)
        self._no_download = _spec(no_download)

    @property
    def empty(self) -> bool:
        """Whether there are no one-way rules at all."""
        return self._no_upload is None and self._no_download is None

    def may_write(self, side: Side, path: str, is_dir: bool) -> bool:
        """Whether sync may create, change or delete `path` on `side`."""
        spec = self._no_upload if side is Side.REMOTE else self._no_download
        return spec is None or not spec.match_file(path + "/" if is_dir else path)


def _spec(lines: Sequence[str]) -> GitIgnoreSpec | None:
    if not lines:
        return None
    with warnings.catch_warnings():  # see _Layer
        warnings.simplefilter("ignore", FutureWarning)
        return GitIgnoreSpec.from_lines(list(lines))


# --- names ---------------------------------------------------------------------------------

_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]]
)
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


@dataclass(frozen=True)
class NameRules:
    """What names a file system accepts, so a name the other side cannot hold is skipped.

    `fold` is how the file system compares names: on a case-insensitive one, `README` and
    `readme` are one file, and writing the second would overwrite the first.
    """

    system: str
    case_insensitive: bool

    @classmethod
    def for_platform(cls, platform: str = sys.platform) -> NameRules:
        """The rules for the laptop's operating system (as `sys.platform` names it)."""
        if platform.startswith("win"):
            return WINDOWS
        if platform == "darwin":
            return MACOS
        return LINUX

    def name_problem(self, name: str) -> str | None:
        """Why `name` (one path component) cannot exist on this system, or None."""
        if self.system == "Windows":
            return _windows_name_problem(name)
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError:
            return "the name is not valid UTF-8"
        return "the name is longer than 255 bytes" if len(encoded) > 255 else None

    def fold(self, path: str) -> str:
        """The form under which this file system considers two paths the same."""
        if not self.case_insensitive:
            return path
        # macOS also treats the composed and decomposed forms of a name as one; folding both
        # ways reports a few names too many on Windows, never one too few.
        return unicodedata.normalize("NFC", path).casefold()


def _windows_name_problem(name: str) -> str | None:
    if _WINDOWS_FORBIDDEN.search(name):
        return 'Windows does not allow the characters <>:"|?*\\ or control characters'
    if name.endswith((".", " ")):
        return "Windows does not allow a name ending in a dot or a space"
    stem = name.split(".", maxsplit=1)[0]
    if stem.rstrip(" ").upper() in _WINDOWS_RESERVED:
        return f"{stem} is a reserved device name on Windows"
    try:
        units = len(name.encode("utf-16-le")) // 2
    except UnicodeEncodeError:
        return "the name is not valid Unicode"
    return "the name is longer than 255 characters" if units > 255 else None


LINUX = NameRules("Linux", case_insensitive=False)
MACOS = NameRules("macOS", case_insensitive=True)
WINDOWS = NameRules("Windows", case_insensitive=True)
# For names that must not collide on any file system.
ANY_CASE = NameRules("any", case_insensitive=True)


def conflict_copy_name(
    path: str, side: str, stamp: str, taken: set[str], rules: Iterable[NameRules]
) -> str | None:
    """A fresh name beside `path` for `side`'s version in a conflict, or None if none fits.

    `<name>.conflict-<side>-<stamp>`, then `-2`, `-3`... The suffix goes after the extension
    on purpose: a copy of `test_app.py` must not be collected as a test, nor a copy of
    `main.go` compiled into the package. `taken` holds `ANY_CASE.fold` of every name in use;
    the chosen one is added to it. Returns None if one of `rules` refuses the name (it would
    be too long there).
    """
    directory, _, name = path.rpartition("/")
    stem = f"{name}.conflict-{side}-{stamp}" if stamp else f"{name}.conflict-{side}"
    for number in range(1, 1000):
        candidate = stem if number == 1 else f"{stem}-{number}"
        if any(r.name_problem(candidate) for r in rules):
            return None
        full = f"{directory}/{candidate}" if directory else candidate
        if ANY_CASE.fold(full) not in taken:
            taken.add(ANY_CASE.fold(full))
            return full
    return None


def refused_names(
    present: Iterable[str], created: Collection[str], removed: Collection[str], rules: NameRules
) -> dict[str, str]:
    """Of the paths about to be `created` on a side, those its file system cannot hold.

    `present` is everything the side has now (including what sync leaves alone) and `removed`
    what the same pass deletes there. A name that differs from another only by case on a
    case-insensitive side would overwrite it; both the new name and a new twin are refused,
    an existing one keeps syncing. Returns path -> reason.
    """
    refused: dict[str, str] = {}
    for path in created:
        problem = rules.name_problem(path.rpartition("/")[2])
        if problem:
            refused[path] = problem
    if rules.case_insensitive and created:
        buckets: dict[str, list[str]] = {}
        for path in (*present, *created):
            if path not in removed:
                buckets.setdefault(rules.fold(path), []).append(path)
        for path in created:
            twins = [p for p in buckets[rules.fold(path)] if p != path]
            if twins and path not in refused:
                refused[path] = f"it is the same name as {twins[0]!r} on {rules.system}"
    return refused


def unsyncable_name(name: str) -> str | None:
    """Why sync refuses a name on either side (the path stays untouched), or None.

    A backslash is a separator on Windows, so `a\\..\\x` from a pod could write anywhere there;
    names that are not UTF-8 cannot be written on macOS or Windows. Refusing them everywhere
    keeps a tree syncing the same way from every laptop.
    """
    if "\\" in name:
        return "the name contains a backslash"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    return None


def path_problem(path: str) -> str | None:
    """Why `path` cannot be addressed under a root at all (absolute, `..`, empty parts), or None."""
    if not path:
        return "an empty path"
    if "\0" in path:
        return "a NUL character in the path"
    if path.startswith("/"):
        return "an absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "a path with an empty, '.' or '..' component"
    return None


def symlink_problem(path: str, target: str) -> str | None:
    """Why the symlink at `path` pointing to `target` is not synced, or None.

    Links are synced only when their target, read as a path relative to the link, stays inside
    the root; absolute links never do, because the roots differ between the sides.
    """
    if not target or "\0" in target:
        return "the link is empty"
    if "\\" in target:
        return "the link target contains a backslash"
    if target.startswith("/"):
        return "the link is absolute"
    depth = path.count("/")
    for part in target.split("/"):
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            return "the link points outside the sync root"
    return None
