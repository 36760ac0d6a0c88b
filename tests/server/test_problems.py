"""Every error leaves as application/problem+json (RFC 9457) with a message to act on."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from devspace_server.config import Config
from testbed.process import free_port

from .browser import csrf_token

MEMBERS = {"type", "title", "status", "detail", "instance"}


def problem(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = json.loads(response.get_data())
    assert set(body) >= MEMBERS
    assert body["status"] == status
    assert body["instance"].startswith("urn:uuid:")
    return body


def test_an_unknown_path_is_a_404_problem(client: FlaskClient) -> None:
    body = problem(client.get("/api/v1/nothing-here"), 404)
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"
    assert "/api/v1/openapi.json" in body["detail"]


def test_a_wrong_method_is_a_405_problem_naming_the_right_ones(client: FlaskClient) -> None:
    response = client.delete("/healthz")
    body = problem(response, 405)
    assert body["detail"] == "DELETE is not allowed here; use GET, HEAD."
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "HEAD"}


def test_malformed_json_is_a_400_problem(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/test-things", data='{"name": "lamp",', content_type="application/json"
    )
    body = problem(response, 400)
    assert body["type"] == "urn:devspace:problem:malformed-json"
    assert body["detail"].startswith("The body is not valid JSON:")


def test_a_body_that_is_not_json_is_a_415_problem(client: FlaskClient) -> None:
    body = problem(client.post("/api/v1/test-things", data={"name": "lamp"}), 415)
    assert "Content-Type: application/json" in body["detail"]


def test_invalid_fields_are_each_named_with_what_to_do(client: FlaskClient) -> None:
    sent = {"name": "x", "parts": [{"name": "ok"}, {"name": ""}], "colour": "red"}
    body = problem(client.post("/api/v1/test-things", json=sent), 422)
    assert body["type"] == "urn:devspace:problem:validation-error"
    by_field = {e["field"]: e for e in body["errors"]}
    assert set(by_field) == {"name", "size", "parts.1.name", "colour"}
    assert by_field["size"]["detail"] == "This field is required."
    assert by_field["name"]["detail"] == "String should have at least 3 characters."
    assert by_field["parts.1.name"]["pointer"] == "#/parts/1/name"
    assert by_field["colour"]["detail"].startswith("Unknown field: remove it (known fields: name")
    assert "name" in body["detail"]


def test_a_body_of_the_wrong_shape_is_a_422_problem(client: FlaskClient) -> None:
    body = problem(client.post("/api/v1/test-things", json=[1, 2]), 422)
    assert body["errors"] == [{"field": "", "pointer": "#/", "detail": "Send a JSON object here."}]


def test_an_invalid_query_is_a_422_problem(client: FlaskClient) -> None:
    body = problem(client.get("/api/v1/test-things/7?limit=500"), 422)
    assert body["detail"] == "The request query string has invalid fields: limit."
    assert body["errors"][0]["field"] == "limit"


def test_valid_requests_reach_the_view_and_answer_its_model(client: FlaskClient) -> None:
    response = client.post("/api/v1/test-things", json={"name": "lamp", "size": 3})
    assert response.status_code == 201
    assert response.get_json() == {"id": 1, "name": "lamp", "size": 3}
    assert client.get("/api/v1/test-things/7?limit=2").get_json()["name"] == "xx"


def test_a_too_large_body_is_a_413_problem(client: FlaskClient) -> None:
    body = json.dumps({"name": "x" * (2 * 1024 * 1024)})
    problem(client.post("/api/v1/test-things", data=body, content_type="application/json"), 413)


def test_an_unexpected_error_is_a_500_problem_logged_not_shown(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="devspace_server.problems"):
        body = problem(client.get("/api/v1/test-things/boom"), 500)
    assert "secret internals" not in json.dumps(body)
    (record,) = caplog.records
    assert body["instance"] in record.getMessage()
    assert record.exc_info is not None


def test_an_unreachable_database_makes_readyz_a_503_problem(
    config: Config, make_app: Callable[[Config], Flask], unreachable_sqlite_url: str
) -> None:
    if config.database_url.startswith("sqlite"):
        url = unreachable_sqlite_url
    else:  # nothing listens on a port that was free a moment ago
        url = f"postgresql+psycopg://devspace@127.0.0.1:{free_port()}/devspace"
    client = make_app(replace(config, database_url=url)).test_client()
    assert client.get("/healthz").status_code == 200
    body = problem(client.get("/readyz"), 503)
    assert body["type"] == "urn:devspace:problem:database-unavailable"
    assert "cannot reach the database" in body["detail"]


def test_a_database_failure_inside_a_request_is_a_503_problem(
    config: Config, make_app: Callable[[Config], Flask], unreachable_sqlite_url: str
) -> None:
    client = make_app(replace(config, database_url=unreachable_sqlite_url)).test_client()
    token = csrf_token(client)  # no session yet: the sign-in page needs no database
    response = client.post(
        "/login", data={"username": "alice", "password": "pw", "csrf_token": token}
    )
    body = problem(response, 503)
    assert body["type"] == "urn:devspace:problem:database-unavailable"
    assert response.headers["Retry-After"] == "5"


def test_responses_carry_security_headers(client: FlaskClient) -> None:
    headers = client.get("/healthz").headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
