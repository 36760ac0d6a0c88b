"""Helpers for the spaces and quotas tests: request bodies and problem reading."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Caller = Callable[..., Any]
"""`call(method, path, json=…)`: a request with some user's token."""


def new_space(name: str = "work", **fields: Any) -> dict[str, Any]:
    """A create body for a small space."""
    return {
        "name": name,
        "image": "python:3.12",
        "command": ["sleep", "infinity"],
        "resources": {"cpu_request": "100m", "memory_request": "64Mi"},
        "storage": "1Gi",
        **fields,
    }


def errors_of(response: Any) -> dict[str, str]:
    """Field to message of a 422 problem."""
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    return {e["field"]: e["detail"] for e in response.get_json()["errors"]}
