# ruff: noqa: RUF001  (the multiplication sign and en dash are the table's typography)
"""Rows of the benchmark table: our figure and the peer's from the same run, as medians with
their spread, the ratio against the goal, and the machine the run was on."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Machine:
    """Where a run happened: cores, CPU model, kernel, and how busy it was when it started."""

    nproc: int
    cpu: str
    kernel: str
    load: str

    @classmethod
    def here(cls) -> Machine:
        cpu = "unknown CPU"
        try:
            with open("/proc/cpuinfo") as info:
                for line in info:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        load = " ".join(f"{n:.2f}" for n in os.getloadavg())
        return cls(os.cpu_count() or 0, cpu, platform.release(), load)

    def __str__(self) -> str:
        return f"{self.nproc} × {self.cpu}, Linux {self.kernel}, load average at start {self.load}"


@dataclass(frozen=True)
class Samples:
    """Repeated measurements of one figure, in `unit` (seconds, or MiB/s for throughput)."""

    values: tuple[float, ...]
    unit: str

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def __str__(self) -> str:
        def fmt(value: float) -> str:
            if self.unit == "s":
                return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
            return f"{value:.0f} {self.unit}"

        low, high = min(self.values), max(self.values)
        return f"{fmt(self.median)} ({fmt(low)}–{fmt(high)}, n={len(self.values)})"


@dataclass(frozen=True)
class Row:
    """One benchmark: what it is, ours, the peer's, and the goal on their ratio.

    `higher_is_better` says whether the figure is a throughput (ratio = ours / peer's, goal a
    minimum) or a time (ratio = ours / peer's, goal a maximum).
    """

    name: str
    what: str
    ours: Samples
    peer_name: str
    peer: Samples
    goal: float | None
    """None: no goal on this ratio (the row shows a cost; another row holds the goal)."""
    higher_is_better: bool
    when: datetime

    @property
    def ratio(self) -> float:
        return self.ours.median / self.peer.median

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.ratio >= self.goal if self.higher_is_better else self.ratio <= self.goal

    @property
    def goal_text(self) -> str:
        if self.goal is None:
            return "–"
        return f"≥ {self.goal:g}×" if self.higher_is_better else f"≤ {self.goal:g}×"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def markdown(rows: list[Row], machine: Machine, command: str) -> str:
    """The table as BENCHMARKS.md shows it, with the machine and the command that made it."""
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {machine}",
        "",
        "| benchmark | ours: devspace | peer | peer's figure | ratio | goal | met | date (UTC) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name}: {row.what} | {row.ours} | {row.peer_name} | {row.peer} "
            f"| {row.ratio:.4g}× | {row.goal_text} | {_met_text(row.met)} "
            f"| {row.when:%Y-%m-%d %H:%M} |"
        )
    return "\n".join(lines) + "\n"


def _met_text(met: bool | None) -> str:
    return "–" if met is None else "yes" if met else "**no**"


def turns(runs: int) -> Iterator[tuple[int, str]]:
    """`(run, side)` for `runs` runs of "ours" and "peer", alternating which goes first so
    that neither always meets the warmer (or busier) machine."""
    for run in range(runs):
        yield from (
            (run, side) for side in (("ours", "peer") if run % 2 == 0 else ("peer", "ours"))
        )
