"""The published JSON Schema of devspace.yaml (`devspace.schema.json`, package data) and a
small interpreter of the keywords it uses.

The interpreter covers `type`, `properties`, `required`, `additionalProperties`,
`propertyNames`, `items`, `maxItems`, `maxProperties`, `minLength`, `maxLength`, `pattern`,
`minimum`, `maximum`, `oneOf` and local `$ref`, and reads `errorMessage` (as ajv-errors and
editors do) for the advice after a refused value. The tests check that it agrees with
`jsonschema` on valid and invalid files; the CLI does not import `jsonschema`, which costs
more to import than reading the file.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

Where = tuple[str | int, ...]
"""Where a value is in the document: keys and list indexes from the top."""
Problem = tuple[Where, str]
"""Where a problem is, and what it is in words."""

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


@cache
def schema() -> dict[str, Any]:
    """The published JSON Schema of devspace.yaml."""
    text = resources.files(__name__).joinpath("devspace.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def check(document: Any) -> list[Problem]:
    """Every way `document` (parsed YAML) breaks the schema, outermost keys first."""
    return list(_check(document, schema(), schema(), ()))


def dotted(where: Where) -> str:
    """`where` as people write it: `ports[1].port`."""
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**{k: v for k, v in node.items() if k != "$ref"}, **target}
    return node


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    for name in ("object", "array", "string", "integer", "number", "null"):
        if isinstance(value, _TYPES[name]):
            return name
    return type(value).__name__


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    return isinstance(value, _TYPES[kind])


def _check(
    value: Any, node: dict[str, Any], root: dict[str, Any], where: Where
) -> Iterator[Problem]:
    node = _resolve(node, root)
    if "oneOf" in node:
        yield from _one_of(value, node["oneOf"], root, where)
        return
    kinds = node.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            yield where, f"{_show(value)} is a {_type_name(value)}; it must be {' or '.join(kinds)}"
            return
    if isinstance(value, list):
        if len(value) > node.get("maxItems", len(value)):
            yield where, f"has {len(value)} items; at most {node['maxItems']} are allowed"
        if "items" in node:
            for index, item in enumerate(value):
                yield from _check(item, node["items"], root, (*where, index))
    elif isinstance(value, dict):
        yield from _check_object(value, node, root, where)
    else:
        yield from _check_scalar(value, node, where)


def _check_scalar(value: Any, node: dict[str, Any], where: Where) -> Iterator[Problem]:
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0):
            yield where, "must not be empty"
        elif len(value) > node.get("maxLength", len(value)):
            yield where, f"is {len(value)} characters long; at most {node['maxLength']} fit"
        elif "pattern" in node and not re.search(node["pattern"], value):
            yield where, f"{value!r} is not allowed here; {_hint(node)}"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            yield where, f"{value} is less than the minimum, {node['minimum']}"
        if "maximum" in node and value > node["maximum"]:
            yield where, f"{value} is more than the maximum, {node['maximum']}"


def _check_object(
    value: dict[str, Any], node: dict[str, Any], root: dict[str, Any], where: Where
) -> Iterator[Problem]:
    properties: dict[str, Any] = node.get("properties", {})
    if len(value) > node.get("maxProperties", len(value)):
        yield where, f"has {len(value)} entries; at most {node['maxProperties']} are allowed"
    names = node.get("propertyNames")
    extra = node.get("additionalProperties", True)
    for key, item in value.items():
        if names is not None:
            for _, message in _check(key, names, root, ()):
                yield (*where, key), f"the name {message}"
        if key in properties:
            yield from _check(item, properties[key], root, (*where, key))
        elif extra is False:
            close = difflib.get_close_matches(key, list(properties), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(properties)}"
            yield (*where, key), f"unknown key {key!r} ({hint})"
        elif isinstance(extra, dict):
            yield from _check(item, extra, root, (*where, key))
    # After the keys: a misspelt key explains a missing one better than the other way round.
    for name in node.get("required", ()):
        if name not in value:
            about = str(properties[name].get("description", "")).rstrip(".")
            yield where, f"{dotted((*where, name))} is required: {about}"


def _one_of(
    value: Any, options: list[Any], root: dict[str, Any], where: Where
) -> Iterator[Problem]:
    # Report against the option whose type fits the value: "port 70000 is too large" helps
    # more than "matches none of 2 shapes".
    fitting = []
    for option in options:
        resolved = _resolve(option, root)
        kinds = resolved.get("type")
        kinds = [kinds] if isinstance(kinds, str) else (kinds or [])
        if not kinds or any(_is(value, k) for k in kinds):
            fitting.append(option)
    if not fitting:
        shapes = sorted({str(_resolve(o, root).get("type")) for o in options})
        yield where, f"{_show(value)} is a {_type_name(value)}; it must be {' or '.join(shapes)}"
        return
    results = [list(_check(value, option, root, where)) for option in fitting]
    if not any(not found for found in results):
        yield from results[0]


def _hint(node: dict[str, Any]) -> str:
    return str(node.get("errorMessage") or node.get("description") or "see the schema").rstrip(".")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
