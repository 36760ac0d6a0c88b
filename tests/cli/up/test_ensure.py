"""The pure parts of `devspace.ensure`: what to PATCH, which observations count, and how the
wait is shown on a terminal and in a log."""

from __future__ import annotations

import io
from typing import Any

import pytest

from devspace.ensure import (
    Display,
    SpaceFailed,
    differences,
    is_running,
    observed_since,
    wait_running,
)

SPACE: dict[str, Any] = {
    "name": "web",
    "image": "python:3.12",
    "command": ["sleep", "infinity"],
    "args": [],
    "env": {},
    "ports": [{"name": "http", "port": 8000}],
    "resources": {
        "cpu_request": "500m",
        "memory_request": None,
        "cpu_limit": None,
        "memory_limit": None,
    },
    "storage": "10Gi",
    "stopped": False,
}


def test_only_named_fields_that_differ_are_patched() -> None:
    assert differences(SPACE, {"name": "web", "image": "python:3.12"}) == {}
    assert differences(SPACE, {"name": "web", "image": "python:3.13", "env": {}}) == {
        "image": "python:3.13"
    }
    assert differences(SPACE, {"name": "web", "ports": []}) == {"ports": []}


def test_resources_are_compared_and_sent_whole() -> None:
    assert differences(SPACE, {"resources": {"cpu_request": "500m"}}) == {}
    assert differences(SPACE, {"resources": {"cpu_request": "500m", "memory_limit": "1Gi"}}) == {
        "resources": {"cpu_request": "500m", "memory_limit": "1Gi"}
    }
    # Leaving a value out of the file resets it to the cluster's default.
    assert differences(SPACE, {"resources": {}}) == {"resources": {}}


def test_a_stopped_space_is_started() -> None:
    assert differences({**SPACE, "stopped": True}, {"image": "python:3.12"}) == {"stopped": False}


def test_only_observations_after_the_change_count() -> None:
    since = "2026-01-01T10:00:00.500000Z"
    assert observed_since({"observed_at": None}, None)
    assert not observed_since({"observed_at": None}, since)
    assert not observed_since({"observed_at": "2026-01-01T10:00:00.400000Z"}, since)
    assert observed_since({"observed_at": "2026-01-01T10:00:01Z"}, since)


def test_running_needs_ready_and_an_address() -> None:
    assert is_running({"phase": "running", "ready": True, "pod_ip": "10.0.0.2"})
    assert not is_running({"phase": "running", "ready": False, "pod_ip": "10.0.0.2"})
    assert not is_running({"phase": "starting", "ready": True, "pod_ip": "10.0.0.2"})


def test_without_a_terminal_each_change_is_one_line() -> None:
    out = io.StringIO()
    display = Display(out, live=False)
    space = {"name": "web", "phase": "starting", "reason": "the dev pod is pending"}
    display.show(space, 1.0)
    display.show(space, 2.0)
    display.show({**space, "waiting": "no reconciler"}, 3.0, fresh=False)
    display.finish({**space, "phase": "running"}, 4.25)
    assert out.getvalue().splitlines() == [
        "web: starting: the dev pod is pending",
        "web: updating: no reconciler",
        "web: running (4.2 s)",
    ]


def test_on_a_terminal_one_line_is_rewritten_and_cleared() -> None:
    out = io.StringIO()
    display = Display(out, live=True)
    display.show({"name": "web", "phase": "starting", "reason": "a much longer reason"}, 1.0)
    display.show({"name": "web", "phase": "running", "reason": "short"}, 2.0)
    display.abandon()
    text = out.getvalue()
    assert "\n" not in text
    frames = text.split("\r")[1:]
    assert frames[0].endswith("web: starting - a much longer reason (1 s)")
    # The shorter line is padded over the longer one, and the line is blanked at the end.
    assert len(frames[1]) == len(frames[0])
    assert frames[2].strip() == ""


class ScriptedApi:
    """Answers GET with the next scripted space: the old pod's status right after a change
    is a race the real reconciler wins or loses by milliseconds, so it is scripted here."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers

    def call(self, method: str, path: str) -> dict[str, Any]:
        assert (method, path) == ("GET", "/spaces/web")
        return self.answers.pop(0)


def running_at(ip: str, observed: str = "2026-01-01T10:00:01Z") -> dict[str, Any]:
    return {
        "name": "web",
        "phase": "running",
        "reason": "running",
        "ready": True,
        "pod_ip": ip,
        "observed_at": observed,
    }


CHANGED_AT = "2026-01-01T10:00:00Z"


def test_after_a_change_the_old_pod_running_is_not_the_new_one() -> None:
    starting = {**running_at(""), "phase": "starting", "ready": False, "pod_ip": None}
    api = ScriptedApi([starting, running_at("10.0.0.3")])
    found = wait_running(
        api,  # type: ignore[arg-type]
        running_at("10.0.0.2"),
        since=CHANGED_AT,
        timeout=30,
        display=Display(io.StringIO(), live=False),
        replaced="10.0.0.2",
        poll=0.01,
    )
    assert found["pod_ip"] == "10.0.0.3"
    assert api.answers == []


def test_a_new_pod_at_another_address_counts_at_once() -> None:
    api = ScriptedApi([running_at("10.0.0.2"), running_at("10.0.0.4")])
    out = io.StringIO()
    found = wait_running(
        api,  # type: ignore[arg-type]
        running_at("10.0.0.2"),
        since=CHANGED_AT,
        timeout=30,
        display=Display(out, live=False),
        replaced="10.0.0.2",
        poll=0.01,
    )
    assert found["pod_ip"] == "10.0.0.4"
    assert "web: updating: the new pod replaces the old one" in out.getvalue()


def test_an_image_that_cannot_be_pulled_fails_at_once_and_a_crash_only_after_a_grace() -> None:
    pull = {
        **running_at(""),
        "phase": "error",
        "ready": False,
        "reason": "x cannot be pulled",
        "problems": [{"kind": "image-pull", "message": "x cannot be pulled"}],
    }
    with pytest.raises(SpaceFailed, match=r"image-pull: x cannot be pulled\. To fix it: check"):
        wait_running(
            ScriptedApi([]),  # type: ignore[arg-type]
            pull,
            since=CHANGED_AT,
            timeout=30,
            display=Display(io.StringIO(), live=False),
        )
    crash = {**pull, "problems": [{"kind": "crashing", "message": "keeps exiting"}]}
    api = ScriptedApi([crash, running_at("10.0.0.5")])
    found = wait_running(
        api,  # type: ignore[arg-type]
        crash,
        since=CHANGED_AT,
        timeout=30,
        display=Display(io.StringIO(), live=False),
        poll=0.01,
    )
    assert found["pod_ip"] == "10.0.0.5"
