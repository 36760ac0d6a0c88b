"""A blueprint that exists only in the tests, to drive `@operation`'s validation."""

from __future__ import annotations

from typing import Annotated

from flask import Blueprint
from pydantic import Field

from devspace_server.api.operations import Model, operation

blueprint = Blueprint("things", __name__, url_prefix="/api/v1/test-things")


class Part(Model):
    name: Annotated[str, Field(min_length=1, max_length=20)]


class NewThing(Model):
    name: Annotated[str, Field(min_length=3, max_length=20)]
    size: Annotated[int, Field(ge=1, le=10)]
    parts: list[Part] = Field(default_factory=list)


class Thing(Model):
    id: int
    name: str
    size: int


class Page(Model):
    limit: Annotated[int, Field(ge=1, le=100)] = 20


@blueprint.post("")
@operation(
    summary="Make a thing", body=NewThing, response=Thing, status=201, tags=["test"], public=True
)
def make_thing(body: NewThing) -> Thing:
    return Thing(id=1, name=body.name, size=body.size)


@blueprint.get("/<int:thing_id>")
@operation(
    summary="Show a thing", query=Page, response=Thing, errors=[404], tags=["test"], public=True
)
def show_thing(thing_id: int, query: Page) -> Thing:
    return Thing(id=thing_id, name="x" * query.limit, size=1)


@blueprint.get("/boom")
@operation(summary="Fail unexpectedly", tags=["test"], public=True)
def boom() -> None:
    raise RuntimeError("the secret internals of the failure")
