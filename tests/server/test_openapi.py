"""The OpenAPI document is valid OpenAPI 3.1 and stays true to the routes that exist."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from devspace_server.api.openapi import IGNORED_METHODS, build_document, openapi_path
from devspace_server.app import create_app
from devspace_server.config import Config


def disagreements(app: Flask, document: dict[str, Any]) -> list[str]:
    """Each `/api/` route and method missing from `document`, and each documented
    path and method that no route serves."""
    served: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        for method in (rule.methods or set()) - IGNORED_METHODS:
            served.add((openapi_path(rule), method.lower()))
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    missing = [
        f"{m.upper()} {p} is not documented"
        for p, m in sorted(served - documented)
        if p.startswith("/api/")
    ]
    phantom = [
        f"{m.upper()} {p} is documented but not served" for p, m in sorted(documented - served)
    ]
    return missing + phantom


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    return body


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "http://localhost:8080"}]


def test_every_api_route_is_documented_and_every_documented_path_exists(
    app: Flask, document: dict[str, Any]
) -> None:
    assert disagreements(app, document) == []
    assert {"/api/v1/openapi.json", "/healthz", "/readyz"} <= set(document["paths"])


def test_the_check_catches_an_undocumented_route(config: Config) -> None:
    app = create_app(config)
    app.add_url_rule("/api/v1/secret", "secret", lambda: "", methods=["GET", "POST"])
    with app.test_request_context():
        document = build_document(app)
    assert disagreements(app, document) == [
        "GET /api/v1/secret is not documented",
        "POST /api/v1/secret is not documented",
    ]
    document["paths"]["/api/v1/gone"] = {"get": {}}
    assert "GET /api/v1/gone is documented but not served" in disagreements(app, document)


def test_operations_are_described_from_their_models(document: dict[str, Any]) -> None:
    make = document["paths"]["/api/v1/test-things"]["post"]
    body_schema = make["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/NewThing"}
    assert set(make["responses"]) == {"201", "400", "415", "422", "default"}
    problem = make["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    new_thing = document["components"]["schemas"]["NewThing"]
    assert new_thing["required"] == ["name", "size"]
    assert new_thing["additionalProperties"] is False

    show = document["paths"]["/api/v1/test-things/{thing_id}"]["get"]
    params = {p["name"]: p for p in show["parameters"]}
    assert params["thing_id"] == {
        "name": "thing_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }
    assert params["limit"]["in"] == "query"
    assert params["limit"]["schema"]["maximum"] == 100
