"""The optional configuration file: TOML named by `DEVSPACE_CONFIG_FILE`, read as strings.

Every key is a setting's name in lower case (the variable without `DEVSPACE_`); upstream
providers are `[upstream.<name>]` tables. An unknown key is an error, not ignored: a typo
would otherwise leave a setting silently at its default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path

from devspace_server.auth.providers import KEYS as UPSTREAM_KEYS
from devspace_server.errors import ConfigError


def read(path: str | None, known: Sequence[str]) -> dict[str, str]:
    """The settings in the TOML file at `path` (none if `path` is None or empty).

    Values become strings; `[upstream.<name>]` tables are flattened to
    `upstream_<name>_<key>`. Raises `ConfigError` if the file cannot be read or parsed, or
    holds a setting not in `known`.
    """
    if not path:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            [f"DEVSPACE_CONFIG_FILE names {path}, which cannot be read ({exc.strerror})"]
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path} is not valid TOML ({exc}): fix the file"]) from exc
    upstream = _upstream_tables(path, data.pop("upstream", {}))
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            [f"{path} has unknown settings {', '.join(unknown)}: known are {', '.join(known)}"]
        )
    bad = [k for k, v in data.items() if isinstance(v, dict | list | bool)]
    if bad:
        raise ConfigError([f"{path}: {', '.join(bad)} must be a string or a number"])
    return {k: str(v) for k, v in data.items()} | upstream


def _upstream_tables(path: str, table: object) -> dict[str, str]:
    """`[upstream.<name>]` tables, flattened to the keys their variables have."""
    if not isinstance(table, dict) or not all(isinstance(t, dict) for t in table.values()):
        raise ConfigError([f"{path}: upstream must hold tables such as [upstream.corp]"])
    flat = {"upstream_providers": ",".join(table)}
    for name, values in table.items():
        unknown = sorted(set(values) - set(UPSTREAM_KEYS))
        if unknown:
            raise ConfigError(
                [
                    f"{path}: [upstream.{name}] has unknown keys {', '.join(unknown)}: "
                    f"known are {', '.join(UPSTREAM_KEYS)}"
                ]
            )
        for key, value in values.items():
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            flat[f"upstream_{name}_{key}"] = text.lower() if isinstance(value, bool) else text
    return flat
