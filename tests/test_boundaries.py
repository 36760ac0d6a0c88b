"""The package boundaries that STYLE.md asks for hold, and only our own names get installed."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package folder -> packages that no module in it may import
FORBIDDEN = {
    ROOT / "cli/devspace": ("devspace_server",),
    ROOT / "server/devspace_server": ("devspace",),
}


def imported_modules(source: Path) -> set[str]:
    """Every absolute module name that `source` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    """`<file> imports <module>` for each import of a forbidden package under `folder`."""
    return [
        f"{source.relative_to(folder)} imports {name}"
        for source in sorted(folder.rglob("*.py"))
        for name in sorted(imported_modules(source))
        if any(name == f or name.startswith(f"{f}.") for f in forbidden)
    ]


@pytest.mark.parametrize("package", FORBIDDEN, ids=lambda p: p.name)
def test_package_does_not_import_across_the_boundary(package: Path) -> None:
    assert list(package.rglob("*.py")), f"{package} has no modules: the rule would check nothing"
    assert violations(package, FORBIDDEN[package]) == []


def test_the_rule_catches_a_crossing(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("from devspace_server.main import cli\nimport devspace\n")
    assert violations(tmp_path, ("devspace_server",)) == ["bad.py imports devspace_server.main"]


def test_wheel_installs_only_devspace_and_devspace_server(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("devspace-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"devspace", "devspace_server"}
