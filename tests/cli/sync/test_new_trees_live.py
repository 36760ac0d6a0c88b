"""A new folder sent whole by the live engine stays watched in the pod.

The folder is renamed into place in one step (devspace.sync.newtrees), so the pod's
inotifywait sees one name arrive rather than every file being made; it must still watch
everything inside it, or the developer's next edit there would wait for a full pass.
"""

# ruff: noqa: F811 - test_live_sshd's fixtures are imported, then named as parameters

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

# The sidecar's fixtures, and test_live_sshd's engine in a thread.
from ssh.conftest import *  # noqa: F403

from cli.sync.test_live_sshd import (  # noqa: F401 - fixtures are found by name
    Live,
    certificate,
    connect,
    converged,
    sh,
    shell,
    start,
    state_dir,
    write,
)
from devspace.sync.remote import PodFolder
from testbed.eventually import eventually

pytestmark = [pytest.mark.kube, pytest.mark.node, pytest.mark.timeout(180)]


def test_a_pod_edit_inside_a_folder_sent_whole_reaches_the_laptop(
    start: Callable[..., Live], shell: PodFolder, sent_whole: list[str]
) -> None:
    live = start()
    made = live.local.parent / "made-elsewhere"
    for n in range(100):
        write(made / "sub" / "deep" / f"f{n}.txt", f"{n}\n")
    os.rename(made, live.local / "pkg")  # one event: the engine sends the folder in one pass

    eventually(
        lambda: sh(shell, live, "find pkg -type f 2>/dev/null | wc -l").strip() == "100",
        what="the folder in the pod",
        timeout=30,
    )
    assert sent_whole == ["pkg"]
    eventually(live.idle, what="the engine to settle", timeout=20)
    sh(shell, live, "printf 'edited in the pod' > pkg/sub/deep/f7.txt")

    eventually(
        lambda: (live.local / "pkg/sub/deep/f7.txt").read_text() == "edited in the pod",
        what="the pod's edit on the laptop",
        timeout=20,
    )
    eventually(lambda: converged(shell, live), what="both sides to agree", timeout=20)
    assert live.session.full_passes == 1  # the first pass only: the edit came by inotify
