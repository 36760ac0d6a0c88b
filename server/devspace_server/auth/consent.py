"""The pages where a signed-in person lets the CLI act for them.

- `/oauth/authorize`: the consent page of the authorization code flow. It shows who asks
  (the CLI, and the local port it will receive the code on) and for which scopes; Allow
  or Deny post back with the page's CSRF token.
- `/device`: the verification page of the device flow. The person types the code their
  terminal shows, sees what it asks for, and allows or denies it. Every lookup of a code
  is counted by `throttle`, so the codes cannot be guessed by trying them.

Both are plain forms without scripts. A request the CLI got wrong (say, a redirect URI
that is not a loopback one) is shown as an error page and never redirected, because a
redirect to an unchecked address would hand the outcome to whoever chose it.
"""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749.errors import InvalidScopeError, OAuth2Error
from flask import Blueprint, Response, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from devspace_server import audit, context
from devspace_server.auth import csrf, oauth, scopes, sessions, throttle
from devspace_server.models import DeviceAuthorization, DeviceStatus, User, utcnow

blueprint = Blueprint("consent", __name__)

_NOT_CODE = re.compile(r"[^A-Z0-9]")
_FORM_EXPIRED = "This form expired or came from another site. Please try again."


def _sign_in_first() -> BaseResponse:
    return redirect(url_for("local.login_form", next=request.full_path.rstrip("?")), 303)


def _page(template: str, status: int = 200, **values: object) -> Response:
    html = render_template(template, csrf_field=csrf.FIELD, csrf_token=csrf.token(), **values)
    return Response(html, status=status, mimetype="text/html")


def _scope_rows(names: list[str]) -> list[tuple[str, str]]:
    return [(n, scopes.DESCRIPTIONS[n]) for n in names]


def _allowing_form_to(response: Response, redirect_uri: str) -> Response:
    """`response` with a CSP that lets its form lead to `redirect_uri`'s origin.

    Browsers apply `form-action` to the redirects that follow a form too, so the app's
    default `form-action 'self'` would stop the redirect back to the CLI. Otherwise the
    same policy as `app.py` sets everywhere.
    """
    parts = urlsplit(redirect_uri)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action 'self' {parts.scheme}://{parts.netloc}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def _refuse(error: OAuth2Error) -> Response:
    if error.redirect_uri:  # already checked to be the CLI's own loopback address
        response: Response = oauth.server.handle_error_response(None, error)
        return response
    detail = error.description or error.error
    return _page("consent.html", 400, error=f"The request from the CLI is invalid: {detail}")


@blueprint.get("/oauth/authorize")
def authorize_form() -> BaseResponse:
    """The consent page; sends people who are not signed in to sign in first."""
    user = sessions.current_user()
    if user is None:
        return _sign_in_first()
    try:
        grant = oauth.server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        return _refuse(error)
    wanted = scopes.parse(grant.request.scope)
    granted = scopes.grantable(user, wanted)
    if not granted:
        return _refuse(
            InvalidScopeError(
                "No requested scope can be granted to this account.",
                redirect_uri=grant.redirect_uri,
                state=grant.request.payload.state,
            )
        )
    page = _page(
        "consent.html",
        client=oauth.CLIENT_NAME,
        port=urlsplit(grant.redirect_uri).port,
        user=user,
        granted=_scope_rows(granted),
        withheld=[n for n in wanted if n not in granted],
        action=request.full_path,
    )
    return _allowing_form_to(page, grant.redirect_uri)


@blueprint.post("/oauth/authorize")
def authorize() -> BaseResponse:
    """Allow or deny the CLI's request; redirects to its loopback address with the outcome."""
    user = sessions.current_user()
    if user is None:
        return _sign_in_first()
    if not csrf.is_valid():
        return _page("consent.html", 400, error=_FORM_EXPIRED)
    try:
        grant = oauth.server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        return _refuse(error)
    allowed = request.form.get("decision") == "allow"
    if allowed and not scopes.grantable(user, scopes.parse(grant.request.scope)):
        return _page("consent.html", 400, error="No requested scope can be granted.")
    response: Response = oauth.server.create_authorization_response(
        grant=grant, grant_user=user if allowed else None
    )
    audit.record(
        context.db(),
        "oauth.authorized" if allowed else "oauth.denied",
        actor=user,
        ip=context.client_ip(),
        target=user.id,
        details={"client": oauth.CLIENT_ID, "flow": "authorization_code"},
    )
    context.db().commit()
    return response


def normalise_user_code(typed: str) -> str:
    """A user code as stored (`BCDF-GHJK`), however it was typed: case, spaces and dashes
    do not matter."""
    letters = _NOT_CODE.sub("", typed.upper())[:16]
    return f"{letters[:4]}-{letters[4:]}" if len(letters) == 8 else letters


def _throttle_key(user: User) -> str:
    # Counted per account, apart from passwords, and per address together with them.
    return f"device-code:{user.id}"


def _find_pending(user: User, typed: str) -> DeviceAuthorization | Response:
    """The pending device authorization for a typed code, or the page to answer with."""
    db, cfg, ip, now = context.db(), context.config(), context.client_ip(), utcnow()
    key = _throttle_key(user)
    wait = throttle.seconds_until_allowed(db, cfg.login_throttle, key, ip, now)
    if wait:
        minutes = math.ceil(wait / 60)
        response = _page(
            "device.html",
            429,
            error=f"Too many wrong codes. Try again in {minutes} minute{'s' * (minutes != 1)}.",
            user_code=typed,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    row = db.scalar(
        select(DeviceAuthorization).where(
            DeviceAuthorization.user_code == normalise_user_code(typed),
            DeviceAuthorization.status == DeviceStatus.PENDING,
            DeviceAuthorization.expires_at > now,
        )
    )
    throttle.record_attempt(db, cfg.login_throttle, key, ip, succeeded=row is not None, now=now)
    if row is None:
        audit.record(db, "oauth.device_code_wrong", actor=user, ip=ip, target=user.id)
        db.commit()
        return _page(
            "device.html",
            400,
            error="That code is wrong or has expired. Check your terminal and type it again.",
            user_code=typed,
        )
    return row


@blueprint.get("/device")
def device_form() -> BaseResponse:
    """The page where a signed-in person types the code their terminal shows."""
    if sessions.current_user() is None:
        return _sign_in_first()
    return _page("device.html", user_code=request.args.get("user_code", "")[:32])


@blueprint.post("/device")
def device_lookup() -> BaseResponse:
    """Show what the device with the typed code asks for, with Allow and Deny."""
    user = sessions.current_user()
    if user is None:
        return _sign_in_first()
    typed = request.form.get("user_code", "")[:32]
    if not csrf.is_valid():
        return _page("device.html", 400, error=_FORM_EXPIRED, user_code=typed)
    found = _find_pending(user, typed)
    if isinstance(found, Response):
        return found
    context.db().commit()
    wanted = scopes.parse(found.scope)
    granted = scopes.grantable(user, wanted)
    return _page(
        "device.html",
        confirm=True,
        client=oauth.CLIENT_NAME,
        user=user,
        user_code=found.user_code,
        granted=_scope_rows(granted),
        withheld=[n for n in wanted if n not in granted],
    )


@blueprint.post("/device/decide")
def device_decide() -> BaseResponse:
    """Allow or deny the device; the device learns the outcome on its next poll."""
    user = sessions.current_user()
    if user is None:
        return _sign_in_first()
    typed = request.form.get("user_code", "")[:32]
    if not csrf.is_valid():
        return _page("device.html", 400, error=_FORM_EXPIRED, user_code=typed)
    found = _find_pending(user, typed)
    if isinstance(found, Response):
        return found
    granted = scopes.grantable(user, scopes.parse(found.scope))
    allowed = request.form.get("decision") == "allow" and bool(granted)
    found.status = DeviceStatus.APPROVED if allowed else DeviceStatus.DENIED
    found.user_id = user.id
    found.scope = scopes.join(granted)
    audit.record(
        context.db(),
        "oauth.authorized" if allowed else "oauth.denied",
        actor=user,
        ip=context.client_ip(),
        target=user.id,
        details={"client": found.client_id, "flow": "device_code"},
    )
    context.db().commit()
    return _page("device.html", done=True, allowed=allowed)
