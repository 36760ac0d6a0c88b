"""The WSGI app for `gunicorn devspace_server.wsgi:app` (the container image).

Configuration comes from the environment and the optional file; the database must have
been migrated (`devspace-server migrate`, for example in an init container). Run it with
`gunicorn -c python:devspace_server.gunicorn_conf devspace_server.wsgi:app` for JSON logs
from gunicorn too and metrics added up across workers.
"""

from __future__ import annotations

import sys

from flask import Flask

from devspace_server import logs
from devspace_server.app import create_app
from devspace_server.config import load_config
from devspace_server.errors import ConfigError

# gunicorn halts (rather than respawning workers forever) when a worker exits with this.
_GUNICORN_APP_LOAD_ERROR = 4


def _load() -> Flask:
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"devspace-server: {exc}", file=sys.stderr)
        raise SystemExit(_GUNICORN_APP_LOAD_ERROR) from None
    logs.configure(config.log_level, config.log_format)
    return create_app(config)


app = _load()
