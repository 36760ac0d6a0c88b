"""Waiting for a cluster to converge, in tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = 60,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Return check()'s first truthy result, polling; fail the test if none comes in time.

    Exceptions of the `ignore` types count as "not yet" (for example a 403 while an RBAC
    change propagates); any other exception fails at once.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except ignore as error:
            last = error
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last error: {last})")
        time.sleep(0.1)
