"""A parser for the part of the Dockerfile language that our two Dockerfiles use (test bed).

`parse()` turns a Dockerfile into stages of instructions. It knows FROM (with AS), RUN (shell
form), COPY (with --chmod and --from), ENV (KEY=VALUE pairs), USER, WORKDIR, EXPOSE,
ENTRYPOINT and CMD (exec form); anything else raises `UnsupportedInstruction` naming the line,
so that a Dockerfile change the test bed cannot interpret fails loudly instead of building
something else. Standard library only: `rootfs.py` runs it as root outside the virtualenv.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED = ("FROM", "RUN", "COPY", "ENV", "USER", "WORKDIR", "EXPOSE", "ENTRYPOINT", "CMD")
COPY_FLAGS = ("chmod", "from")
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


class UnsupportedInstruction(ValueError):
    """A Dockerfile line the test bed cannot interpret faithfully."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int
    flags: dict[str, str] = field(default_factory=dict)


@dataclass
class Stage:
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each instruction: continuations joined, comments dropped."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        # Docker drops comment lines, also in the middle of a continued instruction.
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(part for part in pending if part)))
        pending = []
    if pending:
        raise UnsupportedInstruction(f"line {start}: the file ends inside a continued line")
    return lines


def _flags(words: list[str], allowed: tuple[str, ...], line: int) -> dict[str, str]:
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        if name not in allowed or not value:
            raise UnsupportedInstruction(f"line {line}: flag --{name} is not supported here")
        flags[name] = value
    return flags


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile. Raises UnsupportedInstruction for anything not handled."""
    stages: list[Stage] = []
    for line, content in logical_lines(text):
        keyword, _, arguments = content.partition(" ")
        keyword = keyword.upper()
        arguments = arguments.strip()
        if keyword not in SUPPORTED:
            raise UnsupportedInstruction(f"line {line}: {keyword} is not supported by the test bed")
        if keyword == "FROM":
            words = arguments.split()
            if len(words) == 3 and words[1].upper() == "AS":
                stages.append(Stage(words[0], words[2], line))
            elif len(words) == 1:
                stages.append(Stage(words[0], None, line))
            else:
                raise UnsupportedInstruction(f"line {line}: FROM {arguments}")
            continue
        if not stages:
            raise UnsupportedInstruction(f"line {line}: {keyword} before FROM")
        flags: dict[str, str] = {}
        if keyword == "COPY":
            words = arguments.split()
            flags = _flags(words, COPY_FLAGS, line)
            arguments = " ".join(words)
        elif arguments.startswith("--"):
            raise UnsupportedInstruction(f"line {line}: flags on {keyword} are not supported")
        if keyword in ("ENTRYPOINT", "CMD") and not arguments.startswith("["):
            raise UnsupportedInstruction(f"line {line}: only the exec (JSON) form of {keyword}")
        if keyword == "RUN" and arguments.startswith("["):
            raise UnsupportedInstruction(f"line {line}: only the shell form of RUN")
        stages[-1].instructions.append(Instruction(keyword, arguments, line, flags))
    if not stages:
        raise UnsupportedInstruction("no FROM")
    return stages


def expand(word: str, env: dict[str, str]) -> str:
    """`$NAME` and `${NAME}` replaced from `env` (unset: empty), as Docker does in ENV."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), word)


def env_pairs(instruction: Instruction, env: dict[str, str]) -> dict[str, str]:
    """The variables an ENV instruction sets, expanded against the environment before it."""
    pairs: dict[str, str] = {}
    for word in shlex.split(instruction.arguments):
        name, equals, value = word.partition("=")
        if not equals or not name:
            raise UnsupportedInstruction(f"line {instruction.line}: ENV needs KEY=VALUE pairs")
        pairs[name] = expand(value, env)
    return pairs


def exec_form(instruction: Instruction) -> list[str]:
    """The argv of an ENTRYPOINT or CMD in exec form."""
    value = json.loads(instruction.arguments)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UnsupportedInstruction(f"line {instruction.line}: not a JSON list of strings")
    return value


def copy_arguments(instruction: Instruction) -> tuple[list[str], str]:
    """(sources, destination) of a COPY. Wildcards and the JSON form are refused."""
    words = shlex.split(instruction.arguments)
    if len(words) < 2 or instruction.arguments.startswith("["):
        raise UnsupportedInstruction(f"line {instruction.line}: COPY SOURCE... DEST")
    sources, destination = words[:-1], words[-1]
    if any(ch in source for source in sources for ch in "*?["):
        raise UnsupportedInstruction(f"line {instruction.line}: wildcards in COPY")
    if len(sources) > 1 and not destination.endswith("/"):
        raise UnsupportedInstruction(f"line {instruction.line}: several sources need a DEST/")
    return sources, destination


class Ignore:
    """A `.dockerignore`: which paths of the build context no COPY sends.

    Plain patterns (with `*`, `?` and `**`) match a path or any of its parents, as Docker's do;
    exceptions (`!pattern`) are refused rather than half-supported.
    """

    def __init__(self, context: Path) -> None:
        self.patterns: list[str] = []
        ignore = context / ".dockerignore"
        if ignore.exists():
            for raw in ignore.read_text().splitlines():
                pattern = raw.strip()
                if not pattern or pattern.startswith("#"):
                    continue
                if pattern.startswith("!"):
                    raise UnsupportedInstruction(f".dockerignore exception {pattern}")
                self.patterns.append(pattern.strip("/").removeprefix("./"))

    def excludes(self, relative: str) -> bool:
        """Whether the context path `relative` (POSIX, no leading ./) is left out."""
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(_matches(prefix, p) for prefix in prefixes for p in self.patterns)


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):
        # `**/x` matches x at any depth, the top included.
        rest = pattern[3:]
        tails = ["/".join(path.split("/")[i:]) for i in range(path.count("/") + 1)]
        return any(_matches(tail, rest) for tail in tails)
    if path.count("/") != pattern.count("/") and "**" not in pattern:
        return False
    return fnmatch.fnmatchcase(path, pattern)
