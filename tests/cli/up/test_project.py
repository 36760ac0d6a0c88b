"""devspace.yaml: the loader's checks (field and line in every error), its agreement with the
published JSON Schema as `jsonschema` reads it, and `devspace init`'s file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from devspace import project
from devspace.project import PortForward, ProjectError, SyncFolder
from devspace.schema import schema

from .conftest import Result


def load(tmp_path: Path, text: str) -> project.Project:
    path = tmp_path / "devspace.yaml"
    path.write_text(text)
    return project.load(path)


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ProjectError) as caught:
        load(tmp_path, text)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_a_full_file_loads(tmp_path: Path) -> None:
    found = load(
        tmp_path,
        """\
name: web
image: python:3.12
command: [sleep, infinity]
env: {DEBUG: 1, FLAG: true, NAME: x}
resources: {cpu_request: 500m, memory_limit: 2Gi, cpu_limit: 2}
storage: 5Gi
ports:
  - 8000
  - {port: 5432, local: 15432, name: db}
sync:
  - local: src
    remote: /workspace/src
    ignore: [build/]
    no_upload: [secrets/]
    gitignore: false
""",
    )
    assert found.name == "web"
    assert found.command == ("sleep", "infinity")
    assert found.args is None
    assert found.env == {"DEBUG": "1", "FLAG": "true", "NAME": "x"}
    assert found.resources == {"cpu_request": "500m", "memory_limit": "2Gi", "cpu_limit": "2"}
    assert found.ports == (PortForward("port-8000", 8000, 8000), PortForward("db", 5432, 15432))
    assert found.sync == (
        SyncFolder(
            tmp_path.resolve() / "src",
            "/workspace/src",
            ignore=("build/",),
            no_upload=("secrets/",),
            gitignore=False,
        ),
    )
    assert found.desired() == {
        "name": "web",
        "image": "python:3.12",
        "command": ["sleep", "infinity"],
        "env": {"DEBUG": "1", "FLAG": "true", "NAME": "x"},
        "resources": {"cpu_request": "500m", "memory_limit": "2Gi", "cpu_limit": "2"},
        "storage": "5Gi",
        "ports": [{"name": "port-8000", "port": 8000}, {"name": "db", "port": 5432}],
    }


def test_left_out_fields_take_defaults(tmp_path: Path) -> None:
    folder = tmp_path / "My App_2"
    folder.mkdir()
    found = load(folder, "image: debian:12\n")
    assert found.name == "my-app-2"
    assert found.sync == (SyncFolder(folder.resolve()),)
    assert found.desired() == {"name": "my-app-2", "image": "debian:12"}
    assert load(folder, "image: debian:12\nsync: []\n").sync == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: web\nimage: 3\n", "devspace.yaml:2: image: 3 is a integer; it must be string"),
        (
            "name: web\nimgae: python\n",
            "devspace.yaml:2: imgae: unknown key 'imgae' (did you mean 'image'?)",
        ),
        (
            "image: x\nports:\n  - 80\n  - {port: 70000}\n",
            "devspace.yaml:4: ports[1].port: 70000 is more than the maximum, 65535",
        ),
        (
            "image: x\nports:\n  - 0\n",
            "devspace.yaml:3: ports[0]: 0 is less than the minimum, 1",
        ),
        (
            "image: x\nports:\n  - {port: 80, lokal: 8080}\n",
            "devspace.yaml:3: ports[0].lokal: unknown key 'lokal' (did you mean 'local'?)",
        ),
        (
            "image: x\nports: [80, {port: 81, local: 80}]\n",
            "devspace.yaml:2: ports[1]: local 80 is also used by ports[0]",
        ),
        (
            "image: x\nresources:\n  cpu_request: lots\n",
            "devspace.yaml:3: resources.cpu_request: 'lots' is not allowed here; write a "
            "Kubernetes quantity, e.g. 500m, 2, 512Mi or 10Gi",
        ),
        ("name: Web\nimage: x\n", "devspace.yaml:1: name: 'Web' is not allowed here; use 1 to 40"),
        ("name: web\n", "devspace.yaml:1: image is required"),
        ("image: x\nimage: y\n", "devspace.yaml:2: image is set twice"),
        ("image: x\nenv:\n  1BAD: y\n", "devspace.yaml:3: env.1BAD: the name '1BAD' is not"),
        (
            "image: x\nsync: {remote: workspace}\n",
            "devspace.yaml:2: sync.remote: 'workspace' is not allowed here; write an absolute",
        ),
        ("image: x\nsync: 3\n", "devspace.yaml:2: sync: 3 is a integer; it must be"),
        ("image: [x\n", "devspace.yaml:2: not valid YAML"),
        ("- image\n", 'devspace.yaml:1: ["image"] is a array; it must be object'),
    ],
)
def test_a_wrong_file_names_the_line_and_the_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert refused(tmp_path, text).startswith(expected)


def test_several_problems_are_counted(tmp_path: Path) -> None:
    message = refused(tmp_path, "image: 1\nname: 2\nports: [0]\n")
    assert message.endswith("(and 2 more problems)")


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="devspace init"):
        project.load(tmp_path / "devspace.yaml")


def test_find_looks_in_parent_folders(tmp_path: Path) -> None:
    (tmp_path / "devspace.yaml").write_text("image: x\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert project.find(deep) == (tmp_path / "devspace.yaml").resolve()
    assert project.find(tmp_path.parent) is None or project.find(tmp_path.parent) != tmp_path


DOCUMENTS: list[Any] = [
    {"image": "x"},
    {"image": "x", "name": "ok-1"},
    {"image": "x", "name": "-bad"},
    {"image": "x", "ports": [1, {"port": 2, "local": 3, "name": "a"}]},
    {"image": "x", "ports": [{"local": 3}]},
    {"image": "x", "ports": [True]},
    {"image": "x", "ports": ["80"]},
    {"image": "x", "resources": {"cpu_request": 0.5, "memory_limit": "1Gi"}},
    {"image": "x", "resources": {"cpu": "1"}},
    {"image": "x", "env": {"A": 1, "B": False}},
    {"image": "x", "env": {"A": [1]}},
    {"image": "x", "sync": []},
    {"image": "x", "sync": [{"local": ""}]},
    {"image": "x", "sync": {"no_download": ["a/"], "gitignore": True}},
    {"image": "x", "sync": {"gitignore": "yes"}},
    {"image": "x y"},
    {"image": "x", "storage": "10Gi", "command": ["a"], "args": ["b"]},
    {"image": "x", "command": "sleep infinity"},
    {"name": "x"},
    {"image": "x", "extra": 1},
]


@pytest.mark.parametrize("document", DOCUMENTS, ids=str)
def test_the_loader_agrees_with_jsonschema(tmp_path: Path, document: Any) -> None:
    # The loader interprets the published schema itself; jsonschema is the reference.
    valid = jsonschema.Draft202012Validator(schema()).is_valid(document)
    text = yaml.safe_dump(document)
    if valid:
        load(tmp_path, text)
    else:
        refused(tmp_path, text)


def test_the_schema_is_a_valid_json_schema_shipped_with_the_package() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$id"] == project.SCHEMA_URL


def test_init_writes_a_file_that_loads(
    devspace: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "Shop API"
    folder.mkdir()
    (folder / "pyproject.toml").write_text("[project]\nname = 'shop'\n")
    monkeypatch.chdir(folder)
    result = devspace("init", "-p", "8000", "-p", "15432:5432")
    assert result.code == 0, result.err
    text = (folder / "devspace.yaml").read_text()
    assert text.startswith(f"# yaml-language-server: $schema={project.schema_location()}\n")
    # The editor's schema is the file this installation validates with.
    assert json.loads(Path(urlsplit(project.schema_location()).path).read_text()) == schema()
    found = project.load(folder / "devspace.yaml")
    assert (found.name, found.image, found.command) == (
        "shop-api",
        "python:3.12",
        ("sleep", "infinity"),
    )
    assert found.ports == (
        PortForward("port-8000", 8000, 8000),
        PortForward("port-5432", 5432, 15432),
    )
    assert found.sync == (SyncFolder(folder.resolve()),)
    # It is commented for people: every section says what it is for.
    assert text.count("\n# ") >= 10


def test_init_keeps_an_existing_file_unless_forced(
    devspace: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "devspace.yaml").write_text("image: mine\n")
    result = devspace("init")
    assert result.code == 2
    assert "exists already" in result.err
    assert "--force" in result.err
    assert (tmp_path / "devspace.yaml").read_text() == "image: mine\n"
    result = devspace("init", "--force", "--image", "alpine:3", "--name", "tool")
    assert result.code == 0, result.err
    found = project.load(tmp_path / "devspace.yaml")
    assert (found.name, found.image, found.ports) == ("tool", "alpine:3", ())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--name", "Bad Name"], "name: 'Bad Name' is not allowed here"),
        (["--port", "http"], "--port 'http': write PORT or LOCAL:REMOTE"),
        (["--port", "99999"], "ports[0]: 99999 is more than the maximum, 65535"),
    ],
)
def test_init_refuses_bad_values_before_writing(
    devspace: Callable[..., Result],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = devspace("init", *args)
    assert result.code == 2
    assert expected in result.err
    assert not (tmp_path / "devspace.yaml").exists()
