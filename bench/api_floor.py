"""The framework floor for `api-latency`: gunicorn + Flask answering a fixed JSON body.

`gunicorn bench.api_floor:app` with BENCH_FLOOR_BODY naming a file that holds the body (the
real `GET /api/v1/spaces` answer, so both send the same bytes). No database, no token check,
no serialisation: what is left is gunicorn's and Flask's own cost per request, the part of
our latency we could not remove without changing the stack.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response

_BODY = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()

app = Flask(__name__)


@app.get("/api/v1/spaces")
def spaces() -> Response:
    return Response(_BODY, mimetype="application/json")
