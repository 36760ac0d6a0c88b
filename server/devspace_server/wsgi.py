"""The WSGI app for `gunicorn devspace_server.wsgi:app` (the container image).

Configuration comes from the environment and the optional file; the database must have
been migrated (`devspace-server migrate`, for example in an init container).
"""

from __future__ import annotations

import logging
import sys

from flask import Flask

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
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return create_app(config)


app = _load()
