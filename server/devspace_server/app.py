"""The application factory: `create_app(config)` builds one Flask app around a `Config`.

Each app has its own engine and session factory; nothing about users is kept in the
process, so any number of workers and replicas give the same answers.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from devspace_server import api, context, pages, problems, telemetry
from devspace_server.auth import consent, local, oauth, upstream
from devspace_server.config import Config, check_safe
from devspace_server.context import EXTENSION, AppState, close_db
from devspace_server.db import make_engine, make_sessionmaker

MAX_REQUEST_BYTES = 1024 * 1024
log = logging.getLogger(__name__)

# The pages load nothing from elsewhere, run no script and may not be framed.
_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def create_app(config: Config) -> Flask:
    """A Flask app serving the devspace API and pages with `config`.

    Raises `ConfigError` if `config` is unsafe (for example a missing or weak secret key, or
    no host key encryption key), even when it was built by hand rather than by
    `load_config()`. Does not connect to the database: `/readyz` says whether it is reachable.
    """
    check_safe(config)
    if config.ssh_ca is None:
        log.warning("no SSH CA key (DEVSPACE_SSH_CA_KEY_FILE): SSH certificates cannot be issued")
    app = Flask("devspace_server")
    secure = config.cookie_secure
    app.config.update(
        SECRET_KEY=config.secret_key,
        # `__Host-` makes browsers refuse the cookie unless Secure, host-only and Path=/.
        SESSION_COOKIE_NAME="__Host-devspace" if secure else "devspace",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=config.session_lifetime_seconds),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=64 * 1024,
    )
    engine = make_engine(config.database_url)
    app.extensions[EXTENSION] = AppState(config, engine, make_sessionmaker(engine))
    app.teardown_appcontext(close_db)

    problems.register(app)
    # First, so that the request id is set before anything else can log.
    telemetry.init_app(app)
    api.register(app)
    app.register_blueprint(local.blueprint)
    app.register_blueprint(oauth.blueprint)
    app.register_blueprint(consent.blueprint)
    upstream.init_app(app, config)
    app.register_blueprint(pages.blueprint)
    app.after_request(_security_headers)
    if config.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=config.proxy_hops, x_proto=config.proxy_hops
        )
    return app


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", _CSP)
    if request.endpoint != "static":
        # Pages and API answers are per user; no cache on the way may keep them.
        headers.setdefault("Cache-Control", "no-store")
    if context.config().cookie_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response
