"""CLI start-up: `devspace --help` against `python -c pass` with the same interpreter.

With hyperfine when it is installed (`hyperfine -N`, warm-up runs first); otherwise a loop of
timed runs, alternating the two commands.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Row, Samples, now


def _hyperfine(commands: list[list[str]], runs: int) -> list[tuple[float, ...]]:
    with tempfile.TemporaryDirectory() as directory:
        export = Path(directory) / "hyperfine.json"
        argv = ["hyperfine", "-N", "--style", "none", "--warmup", "5", "--runs", str(runs)]
        argv += ["--export-json", str(export), *(" ".join(c) for c in commands)]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(export.read_text())["results"]
    return [tuple(result["times"]) for result in results]


def _loop(commands: list[list[str]], runs: int) -> list[tuple[float, ...]]:
    times: list[list[float]] = [[] for _ in commands]
    for run in range(runs + 5):
        for index, command in enumerate(commands):
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            if run >= 5:  # the first runs warm the page cache
                times[index].append(time.perf_counter() - started)
    return [tuple(t) for t in times]


def cli_startup(runs: int) -> tuple[Row, str]:
    """Time both commands `runs` times each; returns the row and which timer was used."""
    python = sys.executable
    devspace = str(Path(python).with_name("devspace"))
    commands = [[devspace, "--help"], [python, "-c", "pass"]]
    if shutil.which("hyperfine"):
        ours, peer = _hyperfine(commands, runs)
        timer = "hyperfine -N"
    else:
        ours, peer = _loop(commands, runs)
        timer = "a timed loop (hyperfine not installed)"
    row = Row(
        "cli-startup",
        "`devspace --help` (s)",
        Samples(ours, "s"),
        "python -c pass",
        Samples(peer, "s"),
        goal=1.5,
        higher_is_better=False,
        when=now(),
    )
    return row, timer
