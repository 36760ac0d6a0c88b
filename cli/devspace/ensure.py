"""Make a space be what a project asks for, and wait until it runs.

`ensure` creates the space if it is missing, starts it if stopped, and changes (PATCH) what
the API lets change: image, command, args, env, resources, ports. `wait_running` then polls
the space until the reconciler has seen that state and the pod runs, showing the phase and
its reason meanwhile (`Display`), and fails fast, with the reconciler's reason, when the
space cannot run.

Only observations made after our last change count: right after a start, the status still
says "stopped" (or an old error) until the reconciler has looked again.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from devspace.api import Api
from devspace.errors import DevspaceError, ServerError
from devspace.remote import space_path

CHANGEABLE = ("image", "command", "args", "env", "ports")
RESOURCES = ("cpu_request", "memory_request", "cpu_limit", "memory_limit")
FATAL = frozenset({"image-pull", "quota-exceeded", "pod-security"})
"""Problem kinds that waiting cannot cure: `wait_running` fails at once."""
ERROR_GRACE = 15.0
"""Seconds any other problem (a crash, no node that fits, the cluster) may last before
`wait_running` gives up: a container may crash once, an autoscaler may add a node."""


ROLLOUT_GRACE = 20.0
"""Seconds after a change during which the pod it replaces, still running, is not taken for
the new one (the status can show the old pod as running before the rollout starts)."""


class SpaceFailed(ServerError):
    """The space cannot run, for the reason the server gives (exit code 4)."""


class StartTimedOut(DevspaceError):
    """The space did not become running in time (exit code 1)."""


@dataclass
class Ensured:
    """What `ensure` did: `action` is created, started, changed, or unchanged."""

    space: dict[str, Any]
    action: str
    changed: list[str] = field(default_factory=list)
    since: str | None = None
    """The space's `updated_at` after our change: only later observations count."""
    replaced: str | None = None
    """The pod IP of the pod our change replaces (a rollout follows every change)."""
    notes: list[str] = field(default_factory=list)


def find_space(api: Api, name: str) -> dict[str, Any] | None:
    """The caller's live space `name`, or None."""
    items: list[dict[str, Any]] = api.call("GET", "/spaces")["items"]
    return next((s for s in items if s["name"] == name), None)


def differences(space: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body that makes `space` what `desired` (a create body) asks for; start it too.

    Only fields `desired` names are compared; resources are compared as a whole, because the
    API replaces all four values at once.
    """
    patch = {k: desired[k] for k in CHANGEABLE if k in desired and desired[k] != space.get(k)}
    if "resources" in desired:
        wanted = {k: desired["resources"].get(k) for k in RESOURCES}
        current = {k: (space.get("resources") or {}).get(k) for k in RESOURCES}
        if wanted != current:
            patch["resources"] = {k: v for k, v in wanted.items() if v is not None}
    if space.get("stopped"):
        patch["stopped"] = False
    return patch


def ensure(api: Api, desired: dict[str, Any]) -> Ensured:
    """Create, start or change the space `desired["name"]` so that it matches `desired`.

    Raises `ServerError` with the server's reason when it refuses (a quota that does not fit:
    409), `AuthError`, `Unreachable`.
    """
    name = desired["name"]
    space = find_space(api, name)
    if space is None:
        created = api.call("POST", "/spaces", json={**desired, "stopped": False})
        return Ensured(created, "created", since=created["updated_at"])
    notes = []
    if "storage" in desired and desired["storage"] != space["storage"]:
        notes.append(
            f"the workspace of {name} stays {space['storage']}: its size cannot change after "
            f"the space is created (delete the space and run `devspace up` again to change it)"
        )
    patch = differences(space, desired)
    if not patch:
        return Ensured(space, "unchanged", notes=notes)
    changed = api.call("PATCH", space_path(name), json=patch)
    action = "started" if list(patch) == ["stopped"] else "changed"
    fields = sorted(k for k in patch if k != "stopped")
    replaced = space.get("pod_ip") if action == "changed" and is_running(space) else None
    return Ensured(
        changed, action, fields, since=changed["updated_at"], replaced=replaced, notes=notes
    )


def _stamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def observed_since(space: dict[str, Any], since: str | None) -> bool:
    """Whether the reconciler has looked at `space` since the change stamped `since`."""
    if since is None:
        return True
    observed, changed = _stamp(space.get("observed_at")), _stamp(since)
    return observed is not None and changed is not None and observed >= changed


def is_running(space: dict[str, Any]) -> bool:
    """Whether the space's pod runs and its sidecar can be reached."""
    return (
        space.get("phase") == "running" and bool(space.get("ready")) and bool(space.get("pod_ip"))
    )


def wait_running(
    api: Api,
    space: dict[str, Any],
    *,
    since: str | None,
    timeout: float,
    display: Display,
    replaced: str | None = None,
    poll: float = 0.5,
) -> dict[str, Any]:
    """Poll `space` until it runs; return it as last seen.

    With `replaced` (the IP of a pod a change replaces), the old pod still running right
    after the change does not count: only a pod at another address, or any running pod once
    the space was seen not running, or after `ROLLOUT_GRACE` seconds (an address reused).

    Raises `SpaceFailed` with the server's reason when the space reports a problem waiting
    cannot cure (at once for an image that cannot be pulled, a quota the pod does not fit or a
    Pod Security refusal; after `ERROR_GRACE` seconds for others), or when it is stopped or
    deleted meanwhile; `StartTimedOut` after `timeout` seconds.
    """
    name = space["name"]
    started = time.monotonic()
    failing_since: float | None = None
    rolled = replaced is None
    while True:
        now = time.monotonic()
        fresh = observed_since(space, since)
        running = fresh and is_running(space)
        if fresh and not running:
            rolled = True
        elif running and not rolled:
            rolled = space.get("pod_ip") != replaced or now - started >= ROLLOUT_GRACE
        if running and rolled:
            display.finish(space, now - started)
            return space
        if running:  # the old pod, still serving until the rollout replaces it
            shown = {**space, "phase": "updating", "reason": "the new pod replaces the old one"}
            display.show(shown, now - started)
        else:
            display.show(space, now - started, fresh)
        if space.get("stopped") or space.get("phase") in ("deleting", "deleted"):
            display.abandon()
            state = "stopped" if space.get("stopped") else "being deleted"
            raise SpaceFailed(f"space {name} was {state} by someone else while it started")
        if fresh and space.get("phase") == "error":
            failing_since = failing_since if failing_since is not None else now
            kinds = {p.get("kind") for p in space.get("problems", [])}
            if kinds & FATAL or now - failing_since >= ERROR_GRACE:
                display.abandon()
                raise SpaceFailed(_failure(space))
        else:
            failing_since = None
        if now - started >= timeout:
            display.abandon()
            raise StartTimedOut(
                f"space {name} is still {space.get('phase')} after {timeout:g} s: "
                f"{space.get('waiting') or space.get('reason')}. Wait longer with --timeout, "
                f"or see `devspace status {name}`"
            )
        try:
            time.sleep(poll if now - started < 10 else 2 * poll)
            space = api.call("GET", space_path(name))
        except BaseException:  # Ctrl-C, or the server gone: the error goes on a clean line
            display.abandon()
            raise


def _failure(space: dict[str, Any]) -> str:
    name = space["name"]
    problems = space.get("problems") or []
    detail = "; ".join(f"{p['kind']}: {p['message']}" for p in problems) or space.get("reason")
    advice = {
        "image-pull": "check the image name in devspace.yaml (or --image) and that the "
        "cluster may pull it",
        "quota-exceeded": "lower the space's resources in devspace.yaml, or ask an admin to "
        "raise your quota",
        "unschedulable": "no node has room for it: lower its resources, or ask an admin",
        "crashing": "make the command keep running, e.g. `command: [sleep, infinity]`",
    }
    hint = next((advice[p["kind"]] for p in problems if p.get("kind") in advice), None)
    hint = hint or f"see `devspace status {name}`"
    return f"space {name} cannot run: {detail}. To fix it: {hint}; then run `devspace up` again"


class Display:
    """Shows a waiting space on `stream` (stderr): on a terminal one line rewritten in place
    with a spinner and the seconds waited; otherwise a plain line each time the phase or the
    reason changes."""

    _SPINNER = "|/-\\"

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._spin = itertools.cycle(self._SPINNER)
        self._last: tuple[Any, ...] | None = None
        self._drawn = 0

    def show(self, space: dict[str, Any], elapsed: float, fresh: bool = True) -> None:
        """The space's phase and reason (or what holds it up), `elapsed` seconds in."""
        phase = space.get("phase") if fresh else "updating"
        why = space.get("waiting") or (space.get("reason") if fresh else "waiting for the cluster")
        if self.live:
            text = f"{next(self._spin)} {space['name']}: {phase} - {why} ({elapsed:.0f} s)"
            width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
            self._draw(text[:width])
        elif (phase, why) != self._last:
            self._last = (phase, why)
            self.stream.write(f"{space['name']}: {phase}: {why}\n")
            self.stream.flush()

    def _draw(self, text: str) -> None:
        # Carriage return and padding rather than ANSI erase: works on every console.
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    def abandon(self) -> None:
        """Clear the live line (an error message follows)."""
        if self.live and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def finish(self, space: dict[str, Any], elapsed: float) -> None:
        """Say the space runs, after `elapsed` seconds."""
        self.abandon()
        self.stream.write(f"{space['name']}: running ({elapsed:.1f} s)\n")
        self.stream.flush()
