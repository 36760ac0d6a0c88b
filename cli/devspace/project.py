"""`devspace.yaml`: a project's space, read and checked against its published JSON Schema.

The schema (`devspace/schema/devspace.schema.json`, shipped in the wheel) is the one source of
truth: editors complete and check the file with it (the `# yaml-language-server: $schema=`
line `devspace init` writes), and `load` checks it with the small interpreter in
`devspace.schema`, which covers the keywords that schema uses — so `devspace up` does not pay
for importing `jsonschema`. Every problem names the file, the line and the field:

    devspace.yaml:7: ports[1].port: 70000 is more than the maximum, 65535

PyYAML is imported only when a file is read, so `devspace --help` stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devspace.errors import UsageError
from devspace.schema import Problem, Where, check, dotted

if TYPE_CHECKING:
    import yaml

FILE_NAME = "devspace.yaml"
SCHEMA_URL = "https://devspace.dev/schema/devspace.schema.json"
"""The schema's `$id`: a name, not hosted anywhere yet (see `schema_location`)."""


def schema_location() -> str:
    """The schema file this installation ships, as a file URI for an editor's `$schema`."""
    return (Path(__file__).parent / "schema" / "devspace.schema.json").as_uri()


DEFAULT_REMOTE = "/workspace"

_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


class ProjectError(UsageError):
    """devspace.yaml is missing, not YAML, or not what the schema allows (exit code 2)."""


@dataclass(frozen=True)
class PortForward:
    """A port of the dev container (`port`, named `name` in the space) and where it is
    forwarded to on this computer (`local`)."""

    name: str
    port: int
    local: int


@dataclass(frozen=True)
class SyncFolder:
    """A folder kept in sync: `local` on this computer, `remote` (absolute) in the space."""

    local: Path
    remote: str = DEFAULT_REMOTE
    ignore: tuple[str, ...] = ()
    no_upload: tuple[str, ...] = ()
    no_download: tuple[str, ...] = ()
    gitignore: bool = True


@dataclass(frozen=True)
class Project:
    """What devspace.yaml asks for. `root` is the folder the file is in."""

    root: Path
    name: str
    image: str
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: dict[str, str] | None = None
    resources: dict[str, str] | None = None
    storage: str | None = None
    ports: tuple[PortForward, ...] = ()
    sync: tuple[SyncFolder, ...] = field(default_factory=tuple)

    def desired(self) -> dict[str, Any]:
        """The space as the API's create body; fields the file leaves out are left out."""
        body: dict[str, Any] = {"name": self.name, "image": self.image}
        for key in ("command", "args"):
            value = getattr(self, key)
            if value is not None:
                body[key] = list(value)
        if self.env is not None:
            body["env"] = dict(self.env)
        if self.resources is not None:
            body["resources"] = dict(self.resources)
        if self.storage is not None:
            body["storage"] = self.storage
        if self.ports:
            body["ports"] = [{"name": p.name, "port": p.port} for p in self.ports]
        return body


def space_name_for(folder: Path) -> str:
    """A valid space name made from `folder`'s name ("My App_2" -> "my-app-2")."""
    name = _NAME_CHARS.sub("-", folder.resolve().name.lower()).strip("-")[:40].strip("-")
    return name or "dev"


def find(start: Path) -> Path | None:
    """The devspace.yaml in `start` or the nearest folder above it, or None."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def load(path: Path) -> Project:
    """Read and check the devspace.yaml at `path`. Raises `ProjectError` naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{path} does not exist: run `devspace init` to write one") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ProjectError(f"cannot read {path}: {error}") from error
    return parse(text, path)


def parse(text: str, path: Path) -> Project:
    """The project in `text` (the content of the file at `path`). Raises `ProjectError`."""
    data, lines = _read_yaml(text, path)
    if data is None:
        data = {}
    problems = check(data)
    problems += _repeated_ports(data)
    if problems:
        where, message = problems[0]
        line = _line_of(lines, where)
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        label = f"{dotted(where)}: " if where else ""
        raise ProjectError(f"{path.name}:{line}: {label}{message}{more}")
    return _project(data, path.resolve().parent)


# --- YAML with line numbers ----------------------------------------------------------------


def _read_yaml(text: str, path: Path) -> tuple[Any, dict[Where, int]]:
    import yaml  # noqa: PLC0415 - about 20 ms; only commands that read the file pay it

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Where, int] = {}
        value = _build(loader, node, (), lines, path.name) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        raise ProjectError(f"{path.name}:{line}: not valid YAML: {error.problem}") from error
    except yaml.YAMLError as error:
        raise ProjectError(f"{path.name}: not valid YAML: {error}") from error
    finally:
        loader.dispose()
    return value, lines


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, where: Where, lines: dict[Where, int], source: str
) -> Any:
    import yaml  # noqa: PLC0415

    lines[where] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        built: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                line = key_node.start_mark.line + 1
                raise ProjectError(f"{source}:{line}: the key {key!r} is not a string")
            if key in built:
                line = key_node.start_mark.line + 1
                raise ProjectError(f"{source}:{line}: {dotted((*where, key))} is set twice")
            built[key] = _build(loader, value_node, (*where, key), lines, source)
            lines[(*where, key)] = key_node.start_mark.line + 1
        return built
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*where, i), lines, source) for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def _line_of(lines: dict[Where, int], where: Where) -> int:
    while where not in lines and where:
        where = where[:-1]
    return lines.get(where, 1)


# --- from checked data to a Project -----------------------------------------------------------


def _repeated_ports(data: Any) -> list[Problem]:
    # Beyond the schema: two forwards cannot share a port on either side, nor a name.
    if not isinstance(data, dict) or not isinstance(data.get("ports"), list):
        return []
    seen: dict[tuple[str, Any], int] = {}
    for index, item in enumerate(data["ports"]):
        spec = {"port": item} if isinstance(item, int) else item
        if not isinstance(spec, dict):
            continue
        port = spec.get("port")
        for what, value in (
            ("port", port),
            ("local", spec.get("local", port)),
            ("name", spec.get("name", f"port-{port}")),
        ):
            if (what, value) in seen:
                return [
                    (
                        (("ports", index)),
                        f"{what} {value} is also used by ports[{seen[what, value]}]",
                    )
                ]
            seen[what, value] = index
    return []


def _project(data: dict[str, Any], root: Path) -> Project:
    ports = []
    for item in data.get("ports", []):
        spec: dict[str, Any] = {"port": item} if isinstance(item, int) else item
        port = int(spec["port"])
        ports.append(
            PortForward(spec.get("name", f"port-{port}"), port, int(spec.get("local", port)))
        )
    sync = data.get("sync", {})
    folders = [sync] if isinstance(sync, dict) else sync
    resources_ = data.get("resources")
    return Project(
        root=root,
        name=data.get("name") or space_name_for(root),
        image=data["image"],
        command=tuple(data["command"]) if "command" in data else None,
        args=tuple(data["args"]) if "args" in data else None,
        env={k: _text(v) for k, v in data["env"].items()} if "env" in data else None,
        resources={k: _text(v) for k, v in resources_.items()} if resources_ is not None else None,
        storage=_text(data["storage"]) if "storage" in data else None,
        ports=tuple(ports),
        sync=tuple(
            SyncFolder(
                local=(root / folder.get("local", ".")).resolve(),
                remote=folder.get("remote", DEFAULT_REMOTE),
                ignore=tuple(folder.get("ignore", ())),
                no_upload=tuple(folder.get("no_upload", ())),
                no_download=tuple(folder.get("no_download", ())),
                gitignore=bool(folder.get("gitignore", True)),
            )
            for folder in folders
        ),
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
