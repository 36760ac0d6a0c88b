"""`bench/run [--only NAME ...] [--small] [--runs N] [--soak-minutes M]`: run the benchmarks,
print the table. `soak` (30 minutes by default) runs only when named with --only.

Starts what it needs (control plane, test node, one sidecar pod with Debian's sshd) unless only
`cli-startup` is asked for, and tears it down at the end. Progress goes to stderr, the table
(Markdown, as BENCHMARKS.md shows it) to stdout, and with `--json PATH` the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.report import Machine, Row, markdown
from bench.startup import cli_startup

NAMES = (
    "small-files",
    "large-file",
    "sync-latency",
    "sync-idle",
    "tunnel",
    "tunnel-two-hops",
    "connect",
    "cli-startup",
    "provision",
    "api-latency",
    "branch-switch",
    "soak",
)
# Not in a plain `bench/run`: it holds tunnels open for --soak-minutes (30 by default).
ON_REQUEST = ("soak",)
NEEDS = {
    "small-files": "rsync",
    "large-file": "sftp",
    "sync-latency": "ssh",
    "sync-idle": "ssh",
    "tunnel": "ssh",
    "tunnel-two-hops": "ssh",
    "connect": "ssh",
    "branch-switch": "rsync",
    "soak": "ssh",
}
PACKAGES = {"rsync": "rsync", "sftp": "openssh-client", "ssh": "openssh-client"}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; returns the exit status (1 if one could not run)."""
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=NAMES,
        default=[n for n in NAMES if n not in ON_REQUEST],
        metavar="NAME",
        help=f"run only these ({', '.join(NAMES)}; soak only when named)",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="2,000 small files, a 128 MiB file, 256 MiB through the tunnel",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each side (default 5)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--soak-minutes", type=float, default=30.0, help="length of the soak (default 30)"
    )
    args = parser.parse_args(argv)
    machine = Machine.here()
    command = "bench/run " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(f"bench: {machine}", file=sys.stderr)

    missing = sorted({NEEDS[n] for n in args.only if n in NEEDS and not shutil.which(NEEDS[n])})
    skipped = [n for n in args.only if n in NEEDS and NEEDS[n] in missing]
    for tool in missing:
        names = ", ".join(n for n in skipped if NEEDS[n] == tool)
        print(
            f"bench: {tool} is not installed (Debian package `{PACKAGES[tool]}`): skipping {names}",
            file=sys.stderr,
        )
    chosen = [n for n in args.only if n not in skipped]

    rows: list[Row] = []
    notes: list[str] = []
    if "cli-startup" in chosen:
        print("bench: cli-startup", file=sys.stderr)
        row, timer = cli_startup(max(args.runs, 30))
        rows.append(row)
        notes.append(f"cli-startup timed with {timer}")
    if "provision" in chosen:
        from bench.provision import provision  # noqa: PLC0415 - starts its own test bed

        print("bench: provision", file=sys.stderr)
        found, said = provision(max(args.runs, 20), *((20, 200) if args.small else (100, 1000)))
        rows += found
        notes += said
    if "api-latency" in chosen:
        from bench.api import api_latency  # noqa: PLC0415 - starts its own servers

        print("bench: api-latency", file=sys.stderr)
        found, said = api_latency(10.0 if args.small else 20.0)
        rows += found
        notes += said
    if any(n in chosen for n in NEEDS):
        rows += _with_sidecar(chosen, args, notes)

    table = markdown(rows, machine, command)
    print(table + "".join(f"\n{note}" for note in notes))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": asdict(machine),
                    "command": command,
                    "notes": notes,
                    "rows": [asdict(r) | {"ratio": r.ratio, "met": r.met} for r in rows],
                },
                default=str,
                indent=2,
            )
        )
    return 1 if skipped else 0


def _with_sidecar(chosen: list[str], args: argparse.Namespace, notes: list[str]) -> list[Row]:
    # Imported here: the test bed and the sync engine are not needed for cli-startup alone.
    from bench.bed import sidecar_test_bed  # noqa: PLC0415
    from bench.branch import branch_goal, branch_switch  # noqa: PLC0415
    from bench.soak import soak  # noqa: PLC0415
    from bench.sync import idle_cost, large_file, latency, small_files  # noqa: PLC0415
    from bench.tunnel import (  # noqa: PLC0415
        connection_setup,
        forwarded_port,
        forwarded_port_two_hops,
    )

    rows, small, runs = [], args.small, args.runs
    work = Path(tempfile.mkdtemp(prefix="devspace-bench-work-"))
    try:
        print("bench: starting the test bed and a sidecar pod", file=sys.stderr)
        through_gateway = any(n in chosen for n in ("tunnel-two-hops", "connect", "soak"))
        with sidecar_test_bed(gateway=through_gateway) as sidecar:
            if "small-files" in chosen:
                print("bench: small-files", file=sys.stderr)
                rows.append(small_files(sidecar, work, runs, 2_000 if small else 10_000))
            if "large-file" in chosen:
                print("bench: large-file", file=sys.stderr)
                rows.append(large_file(sidecar, work, runs, 128 if small else 512))
            if "sync-latency" in chosen:
                print("bench: sync-latency", file=sys.stderr)
                rows += latency(sidecar, work, max(runs, 20) * 2, 2_000 if small else 10_000)
            if "sync-idle" in chosen:
                print("bench: sync-idle", file=sys.stderr)
                rows += idle_cost(sidecar, work, 10_000 if small else 100_000, 60.0)
            if "tunnel" in chosen:
                print("bench: tunnel", file=sys.stderr)
                rows.append(forwarded_port(sidecar, work, runs, 256 if small else 512))
            if sidecar.route is not None and "tunnel-two-hops" in chosen:
                print("bench: tunnel-two-hops", file=sys.stderr)
                mebibytes = 256 if small else 512
                rows.append(forwarded_port_two_hops(sidecar.route, runs, mebibytes))
            if sidecar.route is not None and "connect" in chosen:
                print("bench: connect", file=sys.stderr)
                rows.append(connection_setup(sidecar.route, max(runs, 10)))
            if "branch-switch" in chosen:
                print("bench: branch-switch", file=sys.stderr)
                rows.append(branch_switch(sidecar, work, runs))
                rows.append(branch_goal(rows[-1]))
            if sidecar.route is not None and "soak" in chosen:
                print(f"bench: soak ({args.soak_minutes:g} minutes)", file=sys.stderr)
                found, said = soak(sidecar.route, args.soak_minutes)
                rows += found
                notes += said
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
