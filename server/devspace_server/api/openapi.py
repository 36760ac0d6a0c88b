"""The OpenAPI 3.1 document, built from the app's URL map and each view's `@operation`.

Because the document is derived from the routes that exist and the models that validate
them, it cannot drift from the code; a test checks that every `/api/` route has an
`@operation`, so none goes undocumented.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, json
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from devspace_server import __version__, context
from devspace_server.api.operations import ATTRIBUTE, Model, Operation, operation
from devspace_server.auth import scopes
from devspace_server.problems import MEDIA_TYPE

blueprint = Blueprint("openapi", __name__, url_prefix="/api/v1")
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
_REF = "#/components/schemas/{model}"
_CONVERTER_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}}
_VARIABLE = re.compile(r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?(?P<name>\w+)>")


class InvalidFieldDoc(Model):
    """One invalid field of a request."""

    field: str = Field(description="Dotted location of the field, e.g. `items.0.name`.")
    pointer: str = Field(description="The same location as a JSON Pointer, e.g. `#/items/0/name`.")
    detail: str = Field(description="What is wrong, and what to send instead.")


class Problem(Model):
    """An error, as RFC 9457 problem details.

    RFC 9457 lets a problem type carry extension members (a quota refusal names the `limit`
    it hit, say), so unlike request bodies this schema allows more fields.
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`urn:devspace:problem:<slug>`, or `about:blank`.")
    title: str
    status: int
    detail: str = Field(description="What happened, in words a person can act on.")
    instance: str = Field(description="This occurrence; the server logs it under this id.")
    errors: list[InvalidFieldDoc] | None = Field(
        default=None, description="For validation errors: each invalid field."
    )


def openapi_path(rule: Rule) -> str:
    """A Flask rule such as `/users/<int:id>` as an OpenAPI path, `/users/{id}`."""
    return _VARIABLE.sub(lambda m: "{" + m.group("name") + "}", rule.rule)


def documented_operations(app: Flask) -> list[tuple[Rule, str, Operation]]:
    """Every (rule, method, operation) of `app` whose view has an `@operation`."""
    found: list[tuple[Rule, str, Operation]] = []
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions[rule.endpoint], ATTRIBUTE, None)
        if isinstance(spec, Operation):
            found.extend((rule, m, spec) for m in sorted((rule.methods or set()) - IGNORED_METHODS))
    return found


def _path_parameters(rule: Rule) -> list[dict[str, Any]]:
    return [
        {
            "name": m.group("name"),
            "in": "path",
            "required": True,
            "schema": _CONVERTER_TYPES.get(m.group("converter") or "", {"type": "string"}),
        }
        for m in _VARIABLE.finditer(rule.rule)
    ]


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k != "description"},
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {MEDIA_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
    }


_ERROR_DESCRIPTIONS = {
    400: "Malformed request (for example, a body that is not valid JSON).",
    401: "No usable Bearer token; see WWW-Authenticate.",
    403: "The token lacks a scope (or its user the role) this needs.",
    404: "No such resource.",
    409: "Conflicts with the current state.",
    415: "The body is not JSON.",
    422: "Invalid fields; `errors` names each.",
    429: "Rate limited; see Retry-After.",
    503: "The database is unavailable.",
}


def _operation_doc(rule: Rule, spec: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": rule.endpoint, "summary": spec.summary}
    if spec.description:
        doc["description"] = spec.description
    if spec.tags:
        doc["tags"] = list(spec.tags)
    parameters = _path_parameters(rule) + (_query_parameters(spec.query) if spec.query else [])
    if parameters:
        doc["parameters"] = parameters
    if spec.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
        }
    success: dict[str, Any] = {"description": "Success."}
    if spec.response is not None:
        schema = refs[(spec.response, "serialization")]
        success["content"] = {"application/json": {"schema": schema}}
    elif spec.status != 204:
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(spec.status): success}
    for status in spec.errors:
        responses[str(status)] = _problem(_ERROR_DESCRIPTIONS.get(status, "Error."))
    responses["default"] = _problem("Any other error.")
    doc["responses"] = responses
    # The same scopes whichever way the token was obtained; `[]` marks a public operation.
    needed = list(spec.scopes)
    doc["security"] = [] if spec.public else [{"oauth2": needed}, {"personalToken": needed}]
    return doc


def security_schemes(public_url: str) -> dict[str, Any]:
    """How to get a token: OAuth 2.0 for the CLI, or a personal access token."""
    return {
        "oauth2": {
            "type": "oauth2",
            "description": "The CLI's sign-in: authorization code with PKCE, or device code.",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": f"{public_url}/oauth/authorize",
                    "tokenUrl": f"{public_url}/oauth/token",
                    "refreshUrl": f"{public_url}/oauth/token",
                    "scopes": dict(scopes.DESCRIPTIONS),
                }
            },
        },
        "personalToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token from `POST /api/v1/tokens`.",
        },
    }


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every `@operation` route of `app`."""
    operations = documented_operations(app)
    models: set[tuple[type[BaseModel], str]] = {(Problem, "serialization")}
    for _rule, _method, spec in operations:
        if spec.body is not None:
            models.add((spec.body, "validation"))
        if spec.response is not None:
            models.add((spec.response, "serialization"))
    ordered = sorted(models, key=lambda pair: (pair[0].__name__, pair[1]))
    refs, definitions = models_json_schema(ordered, ref_template=_REF)  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, spec in operations:
        paths.setdefault(openapi_path(rule), {})[method.lower()] = _operation_doc(rule, spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "devspace",
            "version": __version__,
            "description": "Personal development spaces in Kubernetes.",
        },
        "servers": [{"url": context.config().public_url}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": security_schemes(context.config().public_url),
        },
    }


@blueprint.get("/openapi.json")
@operation(summary="This OpenAPI document", tags=["meta"], public=True)
def openapi_document() -> Response:
    """The OpenAPI 3.1 document describing this API."""
    return Response(json.dumps(build_document(current_app)), mimetype="application/json")
