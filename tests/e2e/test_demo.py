"""The README's demo, unattended: `examples/demo.py --check` in a process of its own.

It starts its own control plane, test node and stack, runs `devspace up` without a terminal on
examples/webapp, and checks what a person would: the app answers through the forwarded port,
a local edit is served by the pod, a file made in the pod arrives locally, `down` stops it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kube, pytest.mark.node]

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


def test_the_demo_runs_the_whole_story() -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--check"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for step in (
        "the app answers on 127.0.0.1:",
        "a local edit is served by the pod",
        "a file made in the pod arrived here",
        "all good",
    ):
        assert f"demo: {step}" in done.stderr
