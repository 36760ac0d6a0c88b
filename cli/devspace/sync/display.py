"""What a person sees of a sync: the first pass's progress line on a terminal, and the
summary of a pass (`describe`) that `devspace sync --once` prints (`plan_text`) or emits as
JSON."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from devspace.sync.once import PassReport


class Progress:
    """The first pass's progress on a terminal: bytes copied and the rate, then a summary."""

    def __init__(self, err: TextIO) -> None:
        """Write to `err` (a terminal)."""
        self.err = err
        self.bytes = 0
        self.started = time.monotonic()
        self._shown = 0.0
        self._lock = threading.Lock()
        self.done = False  # after the summary, later passes show nothing here

    def __call__(self, count: int) -> None:
        # Called from the apply's threads too: the counter is shared.
        if self.done:
            return
        with self._lock:
            self.bytes += count
            now = time.monotonic()
            if now - self._shown < 0.1:
                return
            self._shown = now
        self.err.write(f"\r\x1b[Ksync: copying {self._rate(now)}")
        self.err.flush()

    def _rate(self, now: float) -> str:
        seconds = max(now - self.started, 1e-3)
        return f"{_size(self.bytes)}, {_size(int(self.bytes / seconds))}/s"

    def finish(self, files: int | None, started: float) -> None:
        """Replace the progress line with a summary of the pass."""
        self.done = True
        seconds = time.monotonic() - started
        done = f"{files} files and folders, " if files is not None else ""
        rate = _size(int(self.bytes / max(seconds, 1e-3)))
        self.err.write(
            f"\r\x1b[Ksync: first pass done: {done}{_size(self.bytes)} in {seconds:.1f} s "
            f"({rate}/s)\n"
        )
        self.err.flush()


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


def describe(report: PassReport, *, dry_run: bool) -> dict[str, Any]:
    """A pass as data: planned operations, conflicts, skipped paths, brakes, what was done."""
    plan = report.plan
    applied = report.applied
    return {
        "dry_run": dry_run,
        "operations": [_operation(op) for op in plan.operations],
        "conflicts": [
            {
                "path": c.path,
                "kept": c.kept.value if c.kept else None,
                "copy": c.copy,
                "reason": c.reason,
            }
            for c in plan.conflicts
        ],
        "skipped": [
            {"path": s.path, "side": s.side.value, "reason": s.reason} for s in plan.skipped
        ],
        "brakes": [
            {"reason": b.reason.value, "side": b.side.value, "message": b.message}
            for b in plan.brakes
        ],
        "done": len(applied.done) if applied else 0,
        "stale": [{"path": s.operation.path, "reason": s.reason} for s in applied.stale]
        if applied
        else [],
        "remote_missing": report.missing_remote,
    }


def _operation(op: object) -> dict[str, Any]:
    name = type(op).__name__
    words = {
        "Upload": "upload",
        "Download": "download",
        "MakeDir": "mkdir",
        "MakeSymlink": "symlink",
        "SetMode": "chmod",
        "Delete": "delete",
        "MoveAside": "move-aside",
    }
    side = getattr(op, "side", None)
    found: dict[str, Any] = {
        "op": words.get(name, name),
        "path": getattr(op, "path", ""),
        "side": side.value if side is not None else None,
    }
    if name == "MoveAside":
        found["to"] = getattr(op, "to", "")
    return found


def plan_text(summary: dict[str, Any]) -> str:
    """`describe`'s data for people: one line per operation, then conflicts and brakes."""
    where = {"local": "laptop", "remote": "pod"}
    lines = []
    for op in summary["operations"]:
        to = f" -> {op['to']}" if "to" in op else ""
        lines.append(f"{op['op']:<10} {where.get(op['side'], '')[:6]:<6} {op['path']}{to}")
    for conflict in summary["conflicts"]:
        kept = conflict["kept"] or "neither side"
        copy = conflict["copy"] or "no copy made"
        lines.append(f"conflict   {conflict['path']}: kept {kept}'s version; other at {copy}")
    lines += [f"skipped    {s['path']} ({s['side']}): {s['reason']}" for s in summary["skipped"]]
    lines += [f"stale      {s['path']}: {s['reason']}" for s in summary["stale"]]
    lines += [f"brake      {b['message']}" for b in summary["brakes"]]
    if summary["dry_run"]:
        lines.append(f"dry run: {len(summary['operations'])} operations planned, none applied")
    else:
        lines.append(f"{summary['done']} of {len(summary['operations'])} operations applied")
    return "\n".join(lines)
