"""The chart's RBAC files, as the tests read them (helm/devspace/files/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RBAC_FILES = ROOT / "helm/devspace/files"


def load_documents(name: str) -> list[dict[str, Any]]:
    """The YAML documents of one file under helm/devspace/files/."""
    return [d for d in yaml.safe_load_all((RBAC_FILES / name).read_text()) if d]
