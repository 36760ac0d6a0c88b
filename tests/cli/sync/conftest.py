"""Fixtures shared by the sync tests that run against the sidecar."""

from __future__ import annotations

import pytest

from devspace.sync import newtrees, podwrite
from devspace.sync.newtrees import NewTree
from devspace.sync.operations import Operation


@pytest.fixture
def sent_whole(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tops of the new folders the passes chose to send whole (so a test can require one)."""
    tops: list[str] = []

    def recorded(ops: list[Operation], **kwargs: int) -> list[NewTree]:
        trees = newtrees.new_trees(ops, **kwargs)
        tops.extend(tree.top.path for tree in trees)
        return trees

    monkeypatch.setattr(podwrite, "new_trees", recorded)
    return tops
