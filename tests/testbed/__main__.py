"""Bring the whole test bed up for manual use: `make testbed` (Ctrl-C tears it down).

Starts the control plane, the test node and PostgreSQL, prints how to reach them, and waits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from testbed.cluster import ControlPlane
from testbed.node import TestNode
from testbed.postgres import PostgresServer
from testbed.process import StartError


def main() -> int:
    """Run until interrupted; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    parser.add_argument(
        "--directory", type=Path, help="where to keep logs and state (default: a new temp dir)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="do not start PostgreSQL")
    args = parser.parse_args()
    directory: Path = args.directory or Path(tempfile.mkdtemp(prefix="devspace-testbed-"))
    # SIGTERM (for example from `kill`) tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    with ExitStack() as stack:
        try:
            plane = ControlPlane.start(directory / "control-plane")
            stack.callback(plane.stop)
            node = TestNode.start(kubeconfig=plane.admin_kubeconfig, directory=directory / "node")
            stack.callback(node.stop)
            postgres = None
            if not args.no_postgres:
                postgres = PostgresServer.start()
                stack.callback(postgres.stop)
        except StartError as error:
            print(f"test bed did not start: {error}", file=sys.stderr)
            return 1
        print(f"test bed is up (logs in {directory})")
        print(f"  export KUBECONFIG={plane.admin_kubeconfig}")
        print(f"  node: {node.name}    kubectl get nodes,pods -A")
        if postgres is not None:
            print(f"  export DEVSPACE_DATABASE_URL={postgres.url}")
        print("Ctrl-C tears it down.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            print("\ntearing down", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
