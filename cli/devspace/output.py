"""How the CLI speaks: data to stdout (text or `--output json`), progress and errors to stderr,
and everything at debug level to a log file per run under the state directory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from devspace.config import private_dir, state_dir

KEEP_LOGS = 20
FORMATS = ("text", "json")
output_option = click.option(
    "--output",
    "-o",
    "output",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Print text for people or JSON for scripts.",
)


def start_log(verbose: bool) -> Path | None:
    """Log this run at debug level to a new file (keeping the last few) and return its path;
    with `verbose`, debug lines go to stderr too. None when the state directory is unusable:
    a missing log must never stop a command."""
    stop_log()
    root = logging.getLogger("devspace")
    root.setLevel(logging.DEBUG)
    # paramiko logs what it sees (a refused forward, a dropped channel) at ERROR; our own
    # messages say it to the person, so its records go to the log file, never to stderr.
    paramiko = logging.getLogger("paramiko")
    paramiko.setLevel(logging.INFO)
    paramiko.addHandler(logging.NullHandler())
    if verbose:
        shown = logging.StreamHandler(sys.stderr)
        shown.setFormatter(logging.Formatter("debug: %(message)s"))
        root.addHandler(shown)
    try:
        logs = private_dir(state_dir() / "logs")
        path = logs / f"devspace-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    paramiko.addHandler(handler)
    root.debug("devspace %s", " ".join(sys.argv[1:]))
    _prune(logs)
    return path


def stop_log() -> None:
    """Close this run's log handlers (a run inside a longer process must not leak them)."""
    for name in ("devspace", "paramiko"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def _prune(logs: Path) -> None:
    old = sorted(logs.glob("devspace-*.log"), key=lambda p: p.stat().st_mtime)[:-KEEP_LOGS]
    for path in old:
        with contextlib.suppress(OSError):
            path.unlink()


def progress(message: str) -> None:
    """Tell the person what is happening (stderr, so stdout stays data)."""
    click.echo(message, err=True)


def emit(data: Any, output: str, text: Callable[[Any], str]) -> None:
    """Print `data` to stdout: as JSON, or as `text(data)` for people."""
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text(data))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, headers first."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)
