"""`devspace sync` in a project, against the whole stack: the space, the folders and the rules
come from devspace.yaml, and the files travel through the real gateway. `--once` runs in this
process; the live sync runs as a separate process, as a person starts it, and is stopped with
Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from stack import Stack

from devspace.api import Api
from devspace.remote import connect
from testbed.eventually import eventually

from .conftest import Result

pytestmark = [pytest.mark.kube, pytest.mark.node]


@pytest.mark.usefixtures("user")
def test_sync_takes_the_space_folders_and_rules_from_devspace_yaml(
    stack: Stack, project: Path, devspace: Callable[..., Result]
) -> None:
    (project / "devspace.yaml").write_text(
        "name: synced\nimage: devspace.test/shell\ncommand: [sleep, infinity]\n"
        "sync:\n  local: src\n  remote: /workspace/app\n"
        "  ignore: ['*.log']\n  no_upload: [local-only.txt]\n"
    )
    source = project / "src"
    source.mkdir()
    (source / "main.py").write_text("print('hi')\n")
    (source / "debug.log").write_text("noise\n")
    (source / "local-only.txt").write_text("stays here\n")
    started = devspace("up", "-d")
    assert started.code == 0, started.err

    synced = devspace("sync", "--once")
    assert synced.code == 0, synced.err
    with connect(Api(stack.url), "synced") as connection:
        listed = connection.run("cd /workspace/app && ls -A").stdout.decode().split()
    assert listed == ["main.py"]  # not the ignored log, not the upload-only-here file


@pytest.mark.usefixtures("user")
def test_gitignore_false_syncs_what_gitignore_names(
    stack: Stack, project: Path, devspace: Callable[..., Result]
) -> None:
    (project / "devspace.yaml").write_text(
        "name: unignored\nimage: devspace.test/shell\ncommand: [sleep, infinity]\n"
        "sync:\n  local: .\n  remote: /workspace\n  gitignore: false\n"
    )
    (project / ".gitignore").write_text("build/\n")
    (project / "build").mkdir()
    (project / "build" / "out.txt").write_text("generated\n")
    assert devspace("up", "-d").code == 0

    synced = devspace("sync", "--once")
    assert synced.code == 0, synced.err
    with connect(Api(stack.url), "unignored") as connection:
        found = connection.run("cat /workspace/build/out.txt").stdout
    assert found == b"generated\n", synced.out


class Lines:
    """A process's stderr, read line by line as it comes (on a thread)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def finish(self) -> str:
        self._reader.join(30)
        return self.text()


@pytest.mark.usefixtures("user")
def test_live_sync_follows_both_sides_shows_status_and_stops_on_ctrl_c(
    stack: Stack,
    project: Path,
    devspace: Callable[..., Result],
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    (project / "devspace.yaml").write_text(
        "name: live\nimage: devspace.test/shell\ncommand: [sleep, infinity]\n"
        "sync:\n  local: src\n  remote: /workspace/app\n"
    )
    source = project / "src"
    source.mkdir()
    (source / "main.py").write_text("v1\n")
    assert devspace("up", "-d").code == 0

    syncing = spawn("sync")
    err = Lines(syncing)
    eventually(lambda: "sync: idle" in err.text(), what="the first pass", timeout=60)
    with connect(Api(stack.url), "live") as connection:

        def pod(command: str) -> str:
            return connection.run(["sh", "-c", command], timeout=30).stdout.decode()

        assert pod("cat /workspace/app/main.py") == "v1\n", (err.text(), pod("ls -laR /workspace"))
        (source / "main.py").write_text("v2, saved on the laptop\n")
        eventually(
            lambda: pod("cat /workspace/app/main.py") == "v2, saved on the laptop\n",
            what="the laptop's edit in the pod",
            timeout=30,
        )
        pod("mkdir -p /workspace/app/gen && printf 'made in the pod' > /workspace/app/gen/out.txt")
        made = source / "gen" / "out.txt"
        eventually(
            lambda: made.is_file() and made.read_text() == "made in the pod",
            what="the pod's file on the laptop",
            timeout=30,
        )
        (source / "main.py").unlink()
        eventually(
            lambda: pod("ls -A /workspace/app") == "gen\n",
            what="the laptop's delete in the pod",
            timeout=30,
        )

    line = f"sync:    {source} <-> /workspace/app: idle, last pass "

    def settled() -> bool:
        shown = devspace("status", "live")
        assert shown.code == 0, shown.err
        return line in shown.out and "0 pending, 0 conflicts" in shown.out

    eventually(settled, what="`devspace status` to show the sync idle", timeout=30)

    syncing.send_signal(signal.SIGINT)  # Ctrl-C
    assert syncing.wait(timeout=60) == 130
    said = err.finish()
    assert "Traceback" not in said, said
    assert said.rstrip().endswith("devspace: aborted."), said  # click's word for Ctrl-C
    # The folder's lock went with the process: another sync of it may start.
    again = devspace("sync", "--once")
    assert again.code == 0, again.err
    assert "0 of 0 operations applied" in again.out
    shown = devspace("status", "live", "--output", "json")
    assert json.loads(shown.out)["sync"][0]["state"] == "stopped", (shown.out, said)


@pytest.mark.usefixtures("user")
def test_forward_and_sync_end_with_the_reason_when_their_space_is_deleted(
    project: Path,
    devspace: Callable[..., Result],
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    (project / "devspace.yaml").write_text(
        "name: doomed\nimage: devspace.test/shell\ncommand: [sleep, infinity]\n"
        "sync:\n  local: src\n  remote: /workspace/app\n"
    )
    (project / "src").mkdir()
    (project / "src" / "main.py").write_text("v1\n")
    assert devspace("up", "-d").code == 0
    syncing, forwarding = spawn("sync"), spawn("forward", "doomed", "0:8000")
    said = {"sync": Lines(syncing), "forward": Lines(forwarding)}
    eventually(lambda: "sync: idle" in said["sync"].text(), what="the first pass", timeout=60)

    deleted = devspace("spaces", "delete", "doomed", "--yes")
    assert deleted.code == 0, deleted.err

    # Retrying cannot bring a deleted space back: both end (exit 4, the server's refusal)
    # instead of reconnecting for ever.
    for name, process in (("sync", syncing), ("forward", forwarding)):
        assert process.wait(timeout=90) == 4, said[name].finish()
        text = said[name].finish()
        assert "no space named 'doomed'" in text, text
        assert "Traceback" not in text, text
