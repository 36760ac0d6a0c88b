"""Cross-site request forgery protection for the server-rendered forms.

Each browser gets a random token in its (signed, HttpOnly) session cookie; every form
posts it back in a hidden field. A cross-site page cannot read the cookie, so it cannot
supply the token. The Origin header, when the browser sends one, must be our own too.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import request, session

from devspace_server import context

FIELD = "csrf_token"
_KEY = "csrf"


def token() -> str:
    """The current browser's token, created on first use; put it in every form."""
    value = session.get(_KEY)
    if not isinstance(value, str):
        value = secrets.token_urlsafe(32)
        session[_KEY] = value
    return value


def _origin_ok() -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        # Older browsers and non-browser clients send none; browsers send "null" for every
        # form post from a page under our `Referrer-Policy: no-referrer`. The token decides.
        return True
    ours = urlsplit(context.config().public_url)
    theirs = urlsplit(origin)
    return (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc)


def is_valid() -> bool:
    """True if the posted form carries this browser's token and comes from our own origin."""
    expected = session.get(_KEY)
    posted = request.form.get(FIELD, "")
    if not isinstance(expected, str) or not posted:
        return False
    return _origin_ok() and hmac.compare_digest(expected.encode(), posted.encode())
