"""The demo: devspace end to end on this machine, in one command (`make demo`, as root).

It starts the test bed (a Kubernetes control plane and the test node), the devspace server
on SQLite with a real reconciler, and the SSH gateway; makes a user `demo` and signs the CLI
in (in a private config folder, never yours); copies examples/webapp to a work folder; and
runs `devspace up` there: a shell in the dev pod opens, the app's port is forwarded to
127.0.0.1, and edits to the work folder reach the pod. Leaving the shell tears it all down.

`--check` runs the same story without a person: `up` without a terminal, then a local edit
must be served through the forwarded port and a file made in the pod must appear locally.
It exits 0 when all of that happened (tests/e2e/test_demo.py runs it).

`--kubeconfig PATH` runs the same story on an existing cluster instead (demo_cluster.py):
the Helm chart is installed there and the CLI talks to it over HTTP and SSH only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from demo_story import (
    BY_HAND,
    DEVSPACE,
    REPOSITORY,
    check,
    cli_environment,
    free_port,
    project,
    say,
)

sys.path.insert(0, str(REPOSITORY / "tests"))  # the test bed and the stack

if TYPE_CHECKING:
    from stack import Stack

TEST_BED_IMAGE = "devspace.test/shell"  # the test node runs only its own images


@contextmanager
def running_stack(work: Path) -> Iterator[Stack]:
    """Control plane, test node and the devspace stack, torn down on exit."""
    # Here, not at the top: the cluster mode (demo_cluster.py) needs none of the test bed.
    from kubernetes import config as kube_config  # noqa: PLC0415
    from stack import Stack  # noqa: PLC0415

    from testbed.cluster import ControlPlane  # noqa: PLC0415
    from testbed.node import TestNode  # noqa: PLC0415

    with ExitStack() as cleanup:
        say("starting a Kubernetes control plane (etcd, kube-apiserver, controller-manager)")
        plane = ControlPlane.start(work / "control-plane")
        cleanup.callback(plane.stop)
        say("starting the test node (runs pods as local processes in their own namespaces)")
        node = TestNode.start(kubeconfig=plane.admin_kubeconfig, directory=work / "node")
        cleanup.callback(node.stop)
        kube = kube_config.new_client_from_config(str(plane.admin_kubeconfig))
        cleanup.callback(kube.close)
        say("starting the devspace server, its reconciler and the SSH gateway")
        (work / "server").mkdir()
        stack = cleanup.enter_context(
            Stack.start(kube=kube, control_plane=plane, test_node=node, directory=work / "server")
        )
        say(f"server at {stack.url}; kubeconfig {plane.admin_kubeconfig}")
        yield stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="run the story unattended")
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="use this existing cluster instead of the test bed (more options: --kubeconfig "
        "PATH --help)",
    )
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--kubeconfig" or a.startswith("--kubeconfig=") for a in argv):
        import demo_cluster  # noqa: PLC0415 - only this mode needs Helm and its options

        return demo_cluster.main(argv)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        say("run me as root: the test node makes network and mount namespaces")
        return 2
    work = Path(tempfile.mkdtemp(prefix="devspace-demo-"))
    home = work / "cli"
    env = cli_environment(home)
    port = free_port(8080)
    folder = project(work, port, TEST_BED_IMAGE)
    try:
        with running_stack(work) as stack:
            stack.add_user("demo")
            stack.log_in("demo")
            say(f"user `demo` signed in; the project is {folder}")
            if args.check:
                check(folder, port, env)
                say("all good")
            else:
                print(BY_HAND.format(home=home, folder=folder, port=port), file=sys.stderr)
                up = subprocess.run([*DEVSPACE, "up"], cwd=folder, env=env, check=False)
                say(f"devspace up exited {up.returncode}; tearing down")
    except (RuntimeError, OSError) as error:
        say(f"failed: {error} (the logs are kept in {work})")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
