"""Declaring an API operation once: its request and response models drive both the
validation of each request and the OpenAPI document (`api/openapi.py`).

    @blueprint.post("/things")
    @operation(summary="Create a thing", body=NewThing, response=Thing, status=201)
    def create_thing(body: NewThing) -> Thing: ...

The view gets the validated `body` (and `query`) as keyword arguments and returns a model
instance, which is serialised with the declared response model. Invalid input never
reaches the view: it becomes a 415, a malformed-JSON 400 or a 422 naming each field.

Every operation needs a Bearer token unless declared `public=True`, and the token must hold
each of `scopes`; that is checked before the body is even read (401 or 403), and the
declaration is what the OpenAPI document shows as the operation's security requirement.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Response, request
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from devspace_server.auth import tokens
from devspace_server.errors import (
    InvalidField,
    MalformedJson,
    UnsupportedMediaType,
    ValidationFailed,
)

ATTRIBUTE = "__devspace_operation__"
M = TypeVar("M", bound=BaseModel)


class Model(BaseModel):
    """Base for request and response bodies: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Operation:
    """What `@operation` recorded about a view; read by the OpenAPI builder."""

    summary: str
    description: str | None
    tags: tuple[str, ...]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    errors: tuple[int, ...]
    """Statuses of the problem responses this operation documents besides `default`."""
    public: bool = False
    """True if the operation needs no token (probes, the OpenAPI document)."""
    scopes: tuple[str, ...] = ()
    """Scopes the caller's token must hold."""


def operation(
    *,
    summary: str,
    description: str | None = None,
    tags: Sequence[str] = (),
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    errors: Sequence[int] = (),
    public: bool = False,
    scopes: Sequence[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Declare a view as an API operation; see the module docstring.

    The wrapped view raises `InvalidToken` (401) or `InsufficientScope` (403) unless the
    caller may use it, `UnsupportedMediaType`, `MalformedJson` or `ValidationFailed` for bad
    input, and `TypeError` if the view returns something other than `response`.
    """
    if public and scopes:
        raise ValueError(f"{summary!r}: a public operation cannot require scopes")
    declared_errors = set(errors)
    if not public:
        declared_errors.update((401, 403))
    if body is not None or query is not None:
        declared_errors.add(422)
    if body is not None:
        declared_errors.update((400, 415))
    spec = Operation(
        summary=summary,
        description=description,
        tags=tuple(tags),
        body=body,
        query=query,
        response=response,
        status=status,
        errors=tuple(sorted(declared_errors)),
        public=public,
        scopes=tuple(scopes),
    )

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(**path_args: Any) -> Response:
            if not public:
                tokens.authenticate(spec.scopes)
            kwargs = dict(path_args)
            if body is not None:
                kwargs["body"] = parse_body(body)
            if query is not None:
                kwargs["query"] = parse_query(query)
            return _respond(spec, view(**kwargs))

        setattr(wrapper, ATTRIBUTE, spec)
        return wrapper

    return decorate


def _respond(spec: Operation, result: object) -> Response:
    if isinstance(result, Response):
        return result
    if spec.response is None:
        if result is not None:
            raise TypeError(f"{spec.summary!r} declares no response body but returned one")
        return Response(status=spec.status)
    if not isinstance(result, spec.response):
        raise TypeError(f"{spec.summary!r} must return {spec.response.__name__}, not {result!r}")
    return Response(result.model_dump_json(), status=spec.status, mimetype="application/json")


def parse_body(model: type[M]) -> M:
    """The request's JSON body validated as `model`.

    Raises `UnsupportedMediaType` unless the body is JSON, `MalformedJson` if it does not
    parse, `ValidationFailed` naming each invalid field.
    """
    if not request.is_json:
        raise UnsupportedMediaType(
            f"Send the body as JSON, with Content-Type: application/json "
            f"(this request says {request.mimetype or 'nothing'})."
        )
    try:
        # Strict: `true` or "30" where the schema says integer is a client bug to report,
        # not a value to guess at.
        return model.model_validate_json(request.get_data(), strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise MalformedJson(
                f"The body is not valid JSON: {errors[0]['ctx'].get('error', errors[0]['msg'])}."
            ) from None
        raise ValidationFailed([_field(e, model) for e in errors]) from None


def parse_query(model: type[M]) -> M:
    """The query string validated as `model`. Raises `ValidationFailed` naming each field."""
    repeated = sorted(key for key in request.args if len(request.args.getlist(key)) > 1)
    if repeated:
        raise ValidationFailed(
            [
                InvalidField(field=key, pointer=f"#/{key}", detail="Give this parameter once.")
                for key in repeated
            ],
            where="request query string",
        )
    raw = {key: request.args.get(key) for key in request.args}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        failures = [_field(e, model) for e in exc.errors(include_url=False)]
        raise ValidationFailed(failures, where="request query string") from None


def _field(error: ErrorDetails, model: type[BaseModel]) -> InvalidField:
    location = [str(part) for part in error["loc"]]
    pointer = "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in location)
    return InvalidField(
        field=".".join(location), pointer=pointer, detail=_message(error, model, location)
    )


_MESSAGES: Mapping[str, str] = {
    "missing": "This field is required.",
    "model_type": "Send a JSON object here.",
    "model_attributes_type": "Send a JSON object here.",
}


def _message(error: ErrorDetails, model: type[BaseModel], location: list[str]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        known = ", ".join(model.model_fields) if len(location) == 1 else ""
        return f"Unknown field: remove it{f' (known fields: {known})' if known else ''}."
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    message = error["msg"]
    # pydantic says "Value error, <our message>" for validators' ValueErrors.
    message = message.removeprefix("Value error, ")
    return message if message.endswith(".") else f"{message}."
