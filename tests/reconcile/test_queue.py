"""The work queue: each space id at most once queued and once in flight."""

from __future__ import annotations

import threading

from devspace_server.reconcile.loop import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_id_is_queued_once() -> None:
    queue = WorkQueue()
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    assert queue.get(0) == "a"
    assert queue.get(0) == "b"
    assert queue.get(0) is None


def test_an_id_added_while_in_flight_comes_back_after_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")
    assert queue.get(0) is None  # not handed to a second worker meanwhile
    queue.done("a")
    assert queue.get(0) == "a"
    queue.done("a")
    assert queue.get(0) is None


def test_delays_and_an_earlier_add_wins() -> None:
    clock = Clock()
    queue = WorkQueue(clock)
    queue.add("a", delay=10)
    assert queue.get(0) is None
    queue.add("a", delay=1)
    clock.now = 1
    assert queue.get(0) == "a"
    queue.done("a")
    clock.now = 20
    assert queue.get(0) is None  # the superseded entry does not come back


def test_a_waiting_worker_wakes_on_add() -> None:
    queue = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(5)))
    worker.start()
    queue.add("a")
    worker.join(timeout=5)
    assert got == ["a"]
