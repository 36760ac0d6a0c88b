"""`devspace init`: write a commented devspace.yaml for the project in the current folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from devspace import project
from devspace.errors import UsageError
from devspace.output import progress

# Files that say which toolchain a project uses, and an image that has it.
_IMAGES = (
    (("pyproject.toml", "requirements.txt", "setup.py", "Pipfile"), "python:3.12"),
    (("package.json",), "node:22"),
    (("go.mod",), "golang:1.23"),
    (("Cargo.toml",), "rust:1"),
    (("Gemfile",), "ruby:3.3"),
    (("pom.xml", "build.gradle", "build.gradle.kts"), "eclipse-temurin:21"),
)
DEFAULT_IMAGE = "debian:12"
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-]+$")
_PORT = re.compile(r"^(\d{1,5})(?::(\d{1,5}))?$")

TEMPLATE = """\
# yaml-language-server: $schema={schema}
# The dev space of this project. `devspace up` creates (or updates) the space from this file,
# forwards its ports, keeps the sync folder in sync and opens a terminal in it;
# `devspace down` stops it and keeps the workspace.

# The space's name, unique among your spaces.
name: {name}

# The dev container's image, and a command that keeps it running: terminals, sync and ports
# reach it through the space's SSH sidecar, which shares its network, processes and /workspace.
image: {image}
command: [sleep, infinity]

# Environment variables of the dev container.
# env:
#   DEBUG: "1"

# CPU and memory, as Kubernetes quantities; what is left out gets the cluster's defaults.
# resources:
#   cpu_request: 500m
#   memory_request: 1Gi
#   cpu_limit: "2"
#   memory_limit: 4Gi

# The workspace volume's size. It is set when the space is created and cannot change later.
# storage: 10Gi

# Ports the dev container listens on, each forwarded to 127.0.0.1 on this computer:
#   - 8000                               the same number on both sides
#   - {{port: 5432, local: 15432, name: db}}  another number here
ports:{ports}

# What is kept in sync: this folder and /workspace in the space, both ways. Left alone on both
# sides: what .devspaceignore and .gitignore files name, and .git/, node_modules/, .venv/ ...
sync:
  local: .
  remote: /workspace
  # More patterns to leave alone (.gitignore syntax; `!pattern` brings a default back).
  ignore: []
  # Never written in the space (changes here stay here), and never written here.
  no_upload: []
  no_download: []
"""


def _scalar(text: str) -> str:
    # A plain YAML scalar where that reads the same, else a double-quoted (JSON) one.
    if _PLAIN.fullmatch(text) and text.lower() not in ("yes", "no", "on", "off", "null", "~"):
        return text
    return json.dumps(text)


def _ports(specs: tuple[str, ...]) -> str:
    if not specs:
        return " []"
    lines = []
    for spec in specs:
        found = _PORT.fullmatch(spec.strip())
        if not found:
            raise UsageError(
                f"--port {spec!r}: write PORT or LOCAL:REMOTE, e.g. 8000 or 18000:8000"
            )
        local, remote = int(found[1]), int(found[2] or found[1])
        lines.append(f"{remote}" if local == remote else f"{{port: {remote}, local: {local}}}")
    return "".join(f"\n  - {line}" for line in lines)


def guess_image(folder: Path) -> str:
    """An image with the toolchain the files in `folder` suggest; `DEFAULT_IMAGE` otherwise."""
    for names, image in _IMAGES:
        if any((folder / name).exists() for name in names):
            return image
    return DEFAULT_IMAGE


def render(folder: Path, name: str | None, image: str | None, ports: tuple[str, ...]) -> str:
    """The devspace.yaml text for `folder`. Raises `UsageError` for a bad port spec."""
    return TEMPLATE.format(
        schema=project.schema_location(),
        name=_scalar(name or project.space_name_for(folder)),
        image=_scalar(image or guess_image(folder)),
        ports=_ports(ports),
    )


@click.command()
@click.option("--name", help="The space's name (default: this folder's name).")
@click.option("--image", help="The dev container's image (default: guessed from the project).")
@click.option(
    "--port",
    "-p",
    "ports",
    multiple=True,
    metavar="PORT|LOCAL:REMOTE",
    help="A port to forward (repeatable).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing devspace.yaml.")
def init(name: str | None, image: str | None, ports: tuple[str, ...], force: bool) -> None:
    """Write a commented devspace.yaml for the project in this folder.

    It names the space, its image and command, resources, ports to forward and the folder to
    sync; editors check it with its JSON Schema. An existing file is kept unless --force.
    """
    folder = Path.cwd()
    path = folder / project.FILE_NAME
    text = render(folder, name, image, ports)
    # Checked before writing: a bad --name or --image fails here, naming the field.
    project.parse(text, path)
    try:
        with path.open("w" if force else "x", encoding="utf-8", newline="\n") as file:
            file.write(text)
    except FileExistsError:
        raise UsageError(
            f"{path} exists already: edit it, or run `devspace init --force` to replace it"
        ) from None
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from error
    progress(f"Wrote {path}. Edit it, then run `devspace up`.")
