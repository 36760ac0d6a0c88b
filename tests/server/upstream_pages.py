"""Using devspace's sign-in pages in a real browser, and looking at the results.

Helpers for the upstream sign-in tests: the live HTTP server the browser talks to, a person's
way through a provider's form, and what the pages and the database say afterwards.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Flask
from playwright.sync_api import Page
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

from devspace_server import accounts
from devspace_server.context import state
from devspace_server.models import AuditEvent, Role, User

from .conftest import PASSWORD


class LiveServer:
    """devspace over real HTTP on a fixed port; `app` is whichever app the test built."""

    def __init__(self) -> None:
        self.app: Flask | None = None
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://localhost:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "no app is being served"
        # Buffered and closed here: werkzeug's server never closes a response whose client
        # reset the connection (a browser leaving a page while a stylesheet still loads), and
        # the open static file then fails the test with a ResourceWarning.
        response = self.app(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            if hasattr(response, "close"):
                response.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


def sign_in(
    page: Page,
    live: LiveServer,
    title: str,
    login: str,
    password: str,
    *,
    login_label: str = "Login",
) -> None:
    """From devspace's sign-in page through provider `title`'s form, as a person would.

    The provider skips its form when this browser is still signed in there.
    """
    page.goto(f"{live.url}/login")
    through_provider(page, live.url, title, login, password, login_label=login_label)


def through_provider(
    page: Page,
    server_url: str,
    title: str,
    login: str,
    password: str,
    *,
    login_label: str = "Login",
) -> None:
    """On devspace's sign-in page (at `server_url`), as shown: choose provider `title` and
    sign in on its form if it asks; returns back on devspace, on the page that asked for the
    sign-in. The provider skips its form when this browser is still signed in there."""
    page.get_by_role("link", name=f"Sign in with {title}").click()
    if not page.url.startswith(server_url):
        page.get_by_label(login_label).fill(login)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
    assert page.url.startswith(server_url), page.url


def sign_in_and_allow(page: Page, username: str, password: str) -> None:
    """On devspace's sign-in page, as shown: sign in with a local account's password, then
    allow the CLI's request on the consent page."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    allow(page)


def allow(page: Page) -> None:
    """On devspace's consent page ("Allow access?"): press Allow."""
    assert page.get_by_role("heading", name="Allow access?").is_visible()
    page.get_by_role("button", name="Allow").click()


def greeting(page: Page) -> str:
    """What devspace's page says: the greeting, or the sign-in page's error."""
    alert = page.locator("[role=alert]")
    if alert.count():
        return alert.inner_text()
    return page.locator("main p").first.inner_text()


def sign_out(page: Page) -> None:
    """Press devspace's sign-out button."""
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")


def rows(app: Flask, model: Any, *where: Any) -> list[Any]:
    """The rows of `model` matching `where`, detached from their session."""
    with app.app_context(), state().sessions() as session:
        found = list(session.scalars(select(model).where(*where)).all())
        session.expunge_all()
        return found


def audit_actions(app: Flask) -> list[tuple[str, dict[str, Any]]]:
    """The audit log as (action, details), oldest first."""
    return [(e.action, e.details) for e in rows(app, AuditEvent)]


def local_user(app: Flask, username: str, email: str, *, role: Role = Role.USER) -> User:
    """A local account (with a password) whose email is verified."""
    with app.app_context(), state().sessions() as session:
        user = accounts.create_user(
            session,
            username=username,
            role=role,
            email=email,
            email_verified=True,
            password=PASSWORD,
        )
        session.commit()
        session.expunge(user)
        return user


def tampered(url: str, param: str = "state") -> str:
    """`url` with the last characters of its `param` query parameter changed."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query[param] = query[param][:-4] + "AAAA"
    return parts._replace(query=urlencode(query)).geturl()
