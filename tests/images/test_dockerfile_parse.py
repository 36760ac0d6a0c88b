"""The test bed's Dockerfile interpreter (testbed.dockerfile): what it reads, and that it
refuses what it cannot build faithfully rather than building something else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import dockerfile, rootfs
from testbed.dockerfile import UnsupportedInstruction

ROOT = Path(__file__).resolve().parents[2]


def test_our_dockerfiles_parse_into_their_stages() -> None:
    server = dockerfile.parse((ROOT / "Dockerfile").read_text())
    assert [(s.base, s.name) for s in server] == [
        ("python:3.11.14-slim-bookworm", "build"),
        ("python:3.11.14-slim-bookworm", None),
    ]
    copy = [i for i in server[1].instructions if i.keyword == "COPY"]
    assert copy[0].flags == {"from": "build"}
    sshd = dockerfile.parse((ROOT / "sshd-image/Dockerfile").read_text())
    assert len(sshd) == 1
    chmod = [i.flags for i in sshd[0].instructions if i.keyword == "COPY" and i.flags]
    assert chmod == [{"chmod": "0755"}, {"chmod": "0755"}]
    assert {rootfs.base_kind(s.base, s.line) for s in server + sshd} == {"python", "debian"}


def test_continuations_and_comments_make_one_instruction() -> None:
    (stage,) = dockerfile.parse(
        "FROM debian:12.11-slim\n# a comment\nRUN a \\\n# dropped\n && b \\\n  c\nUSER 1000\n"
    )
    assert [(i.keyword, i.arguments, i.line) for i in stage.instructions] == [
        ("RUN", "a && b c", 3),
        ("USER", "1000", 7),
    ]


def test_env_expands_the_values_before_it() -> None:
    (stage,) = dockerfile.parse('FROM debian:12-slim\nENV PATH=/x/bin:$PATH A="b c" B=${A}\n')
    pairs = dockerfile.env_pairs(stage.instructions[0], {"PATH": "/bin", "A": "old"})
    assert pairs == {"PATH": "/x/bin:/bin", "A": "b c", "B": "old"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM debian:12-slim\nADD x /x\n", "line 2: ADD is not supported"),
        ("FROM debian:12-slim\nCOPY --chown=1:1 x /x\n", "flag --chown"),
        ("FROM debian:12-slim\nCMD echo hi\n", "exec (JSON) form of CMD"),
        ('FROM debian:12-slim\nRUN ["true"]\n', "shell form of RUN"),
        ("FROM debian:12-slim\nARG X=1\n", "ARG is not supported"),
        ("RUN true\n", "RUN before FROM"),
        ("FROM debian:12-slim\nRUN a \\\n", "ends inside a continued line"),
    ],
)
def test_what_it_cannot_build_fails_loudly(text: str, message: str) -> None:
    with pytest.raises(UnsupportedInstruction, match=re.escape(message)):
        dockerfile.parse(text)


def test_only_the_bases_it_has_a_stand_in_for() -> None:
    with pytest.raises(UnsupportedInstruction, match=r"no stand-in for FROM alpine:3\.20"):
        rootfs.base_kind("alpine:3.20", 1)
    with pytest.raises(UnsupportedInstruction, match="no stand-in"):
        rootfs.base_kind("python:3.12-slim-bookworm", 1)


def test_dockerignore_leaves_out_caches_at_any_depth(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("# comment\n.venv\n**/__pycache__\n*.egg-info\n")
    ignore = dockerfile.Ignore(tmp_path)
    assert ignore.excludes(".venv/bin/python")
    assert ignore.excludes("server/devspace_server/__pycache__/app.cpython-311.pyc")
    assert ignore.excludes("__pycache__")
    assert ignore.excludes("x.egg-info/PKG-INFO")
    assert not ignore.excludes("server/x.egg-info")  # `*` does not cross a `/`
    assert not ignore.excludes("server/devspace_server/app.py")
    (tmp_path / ".dockerignore").write_text("!keep\n")
    with pytest.raises(UnsupportedInstruction, match="exception"):
        dockerfile.Ignore(tmp_path)


def test_the_repository_dockerignore_keeps_what_the_server_image_copies() -> None:
    ignore = dockerfile.Ignore(ROOT)
    for kept in ("pyproject.toml", "README.md", "cli/devspace/main.py", "server/devspace_server"):
        assert not ignore.excludes(kept)
    assert ignore.excludes(".venv/bin/python")
    assert ignore.excludes("cli/devspace/__pycache__/main.cpython-311.pyc")


def test_the_builder_refuses_an_unsupported_dockerfile(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:12.11-slim\nADD https://example.test/x /x\n")
    done = subprocess.run(
        [sys.executable, "-m", "testbed.rootfs", f"bad={dockerfile}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        check=False,
    )
    assert done.returncode == 1
    assert "line 2: ADD is not supported by the test bed" in done.stderr
