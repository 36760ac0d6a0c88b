"""The demo: devspace end to end on this machine, in one command (`make demo`, as root).

It starts the test bed (a Kubernetes control plane and the test node), the devspace server
on SQLite with a real reconciler, and the SSH gateway; makes a user `demo` and signs the CLI
in (in a private config folder, never yours); copies examples/webapp to a work folder; and
runs `devspace up` there: a shell in the dev pod opens, the app's port is forwarded to
127.0.0.1, and edits to the work folder reach the pod. Leaving the shell tears it all down.

`--check` runs the same story without a person: `up` without a terminal, then a local edit
must be served through the forwarded port and a file made in the pod must appear locally.
It exits 0 when all of that happened (tests/e2e/test_demo.py runs it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))  # the test bed and the stack

# isort: off
from kubernetes import config as kube_config  # noqa: E402

from stack import Stack  # noqa: E402
from testbed.cluster import ControlPlane  # noqa: E402
from testbed.node import TestNode  # noqa: E402
# isort: on

DEVSPACE = [sys.executable, "-m", "devspace"]
BY_HAND = """
Try it by hand in another terminal, while the pod's shell is open:
  export DEVSPACE_CONFIG_DIR={home}/config DEVSPACE_STATE_DIR={home}/state DEVSPACE_CREDENTIALS=file
  cd {folder}
  curl http://127.0.0.1:{port}/      # the app in the pod, through the forwarded port
  $EDITOR index.html; curl again     # the edit, synced into the pod
  devspace status; devspace exec -- ls /workspace
Leave the pod's shell (exit) to tear everything down.
"""
TEST_BED_IMAGE = "devspace.test/shell"  # the test node runs only its own images


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            found: int = probe.getsockname()[1]
            return found
    raise RuntimeError("no free local port")


def project(work: Path, local_port: int) -> Path:
    """examples/webapp copied to `work`, its devspace.yaml set for the test bed."""
    folder = work / "webapp"
    shutil.copytree(REPOSITORY / "examples" / "webapp", folder)
    text = (folder / "devspace.yaml").read_text()
    text = text.replace("image: python:3.12-slim", f"image: {TEST_BED_IMAGE}")
    text = text.replace("ports:\n  - 8080", f"ports:\n  - {{port: 8080, local: {local_port}}}")
    (folder / "devspace.yaml").write_text(text)
    return folder


@contextmanager
def running_stack(work: Path) -> Iterator[Stack]:
    """Control plane, test node and the devspace stack, torn down on exit."""
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


def eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def serves(port: int, words: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
            return words in answer.read().decode()
    except OSError:
        return False


def check(folder: Path, port: int, env: dict[str, str]) -> None:
    """The story without a person. Raises RuntimeError at the first step that fails."""
    say("devspace up -T (no terminal: forwards and syncs until stopped)")
    said = folder.parent / "up.err"  # what `up` tells the person, kept for a failure
    with said.open("w") as stderr:
        up = subprocess.Popen([*DEVSPACE, "up", "-T"], cwd=folder, env=env, stderr=stderr)
    try:
        eventually(lambda: serves(port, "Hello from a dev pod"), "the app answering", 120)
        say(f"the app answers on 127.0.0.1:{port}")
        page = folder / "index.html"
        page.write_text(page.read_text().replace("Hello from a dev pod", "Edited on the laptop"))
        eventually(lambda: serves(port, "Edited on the laptop"), "the edit being served")
        say("a local edit is served by the pod")
        made = subprocess.run(
            [*DEVSPACE, "exec", "--", "sh", "-c", "echo made in the pod > /workspace/pod.txt"],
            cwd=folder,
            env=env,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"devspace exec exited {made.returncode}")
        eventually((folder / "pod.txt").exists, "the pod's file arriving here", 30)
        say("a file made in the pod arrived here")
        if "Secsh channel" in said.read_text():
            raise RuntimeError("paramiko's own messages reached the person's terminal")
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(30)
    if code != 0:
        raise RuntimeError(f"devspace up exited {code} after Ctrl-C")
    down = subprocess.run([*DEVSPACE, "down"], cwd=folder, env=env, check=False)
    if down.returncode != 0:
        raise RuntimeError(f"devspace down exited {down.returncode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="run the story unattended")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        say("run me as root: the test node makes network and mount namespaces")
        return 2
    work = Path(tempfile.mkdtemp(prefix="devspace-demo-"))
    home = work / "cli"
    env = dict(os.environ)
    env |= {
        "DEVSPACE_CONFIG_DIR": str(home / "config"),
        "DEVSPACE_STATE_DIR": str(home / "state"),
        "DEVSPACE_CREDENTIALS": "file",
    }
    os.environ.update({k: env[k] for k in ("DEVSPACE_CONFIG_DIR", "DEVSPACE_STATE_DIR")})
    port = free_port(8080)
    folder = project(work, port)
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
