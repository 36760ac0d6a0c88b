"""Signing in through an upstream provider: OpenID Connect (by discovery URL) or GitHub.

`/login/upstream/<name>` sends the browser to the provider with a fresh `state`, a `nonce`
(OpenID Connect) and a PKCE S256 challenge, all kept in this browser's signed session
cookie by Authlib's Flask client. `/login/upstream/<name>/callback` checks the state,
redeems the code with the verifier, checks the ID token (signature, issuer, audience,
expiry, nonce), reads the person's claims and signs them in through `identities.sign_in`.
Every outcome is audited. The start is a plain link (GET): a form posting to us and then
redirecting to the provider would be blocked by our own `form-action 'self'` policy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from authlib.integrations.base_client.errors import MismatchingStateError
from authlib.integrations.flask_client import OAuth, OAuthError
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
)
from werkzeug.wrappers import Response as BaseResponse

from devspace_server import audit, context
from devspace_server.auth import csrf, sessions
from devspace_server.auth.identities import Refused, UpstreamClaims, sign_in
from devspace_server.auth.local import safe_next
from devspace_server.auth.providers import UpstreamProvider
from devspace_server.config import Config

blueprint = Blueprint("upstream", __name__)
log = logging.getLogger(__name__)

EXTENSION = "devspace.upstream"
TIMEOUT_SECONDS = 10
_NEXT = "upstream_next"


class Upstream:
    """The providers of one app, and Authlib's clients for them."""

    def __init__(self, app: Flask, providers: tuple[UpstreamProvider, ...]) -> None:
        self.providers = {p.name: p for p in providers}
        self.oauth = OAuth(app)
        for p in providers:
            self.oauth.register(p.name, **_client_settings(p))

    def client(self, name: str) -> Any:
        """Authlib's client for provider `name` (a `FlaskOAuth2App`)."""
        return self.oauth.create_client(name)


def _client_settings(p: UpstreamProvider) -> dict[str, Any]:
    scopes = list(p.scopes)
    if p.type == "github" and p.uses_groups and "read:org" not in scopes:
        scopes.append("read:org")
    # PKCE toward every provider: one that does not know it ignores the extra parameters.
    client_kwargs = {
        "scope": " ".join(scopes),
        "code_challenge_method": "S256",
        "default_timeout": TIMEOUT_SECONDS,
    }
    settings: dict[str, Any] = {
        "client_id": p.client_id,
        "client_secret": p.client_secret,
        "client_kwargs": client_kwargs,
    }
    if p.type == "oidc":
        settings["server_metadata_url"] = p.discovery_url
    else:
        settings.update(github_endpoints(p.url))
    return settings


def github_endpoints(url: str) -> dict[str, str]:
    """Authlib's endpoint settings for github.com or a GitHub Enterprise Server at `url`."""
    api = "https://api.github.com/" if url == "https://github.com" else f"{url}/api/v3/"
    return {
        "authorize_url": f"{url}/login/oauth/authorize",
        "access_token_url": f"{url}/login/oauth/access_token",
        "api_base_url": api,
    }


def init_app(app: Flask, config: Config) -> None:
    """Set up the configured providers on `app` and offer them on the sign-in page."""
    upstream = Upstream(app, config.upstream)
    app.extensions[EXTENSION] = upstream
    app.register_blueprint(blueprint)

    @app.context_processor
    def providers() -> dict[str, object]:
        return {"upstream_providers": list(upstream.providers.values())}


def _provider(name: str) -> UpstreamProvider:
    provider = _current().providers.get(name)
    if provider is None:
        abort(404)
    return provider


def _current() -> Upstream:
    found: Upstream = current_app.extensions[EXTENSION]
    return found


def _refusal(message: str, status: int) -> Response:
    html = render_template(
        "login.html",
        error=message,
        username="",
        next_url=safe_next(session.get(_NEXT)),
        csrf_field=csrf.FIELD,
        csrf_token=csrf.token(),
    )
    return Response(html, status=status, mimetype="text/html")


@blueprint.get("/login/upstream/<name>")
def start(name: str) -> BaseResponse:
    """Send the browser to provider `name` to sign in; 404 if no such provider."""
    provider = _provider(name)
    session[_NEXT] = safe_next(request.args.get("next"))
    redirect_uri = f"{context.config().public_url}/login/upstream/{name}/callback"
    try:
        response: BaseResponse = _current().client(name).authorize_redirect(redirect_uri)
    except (requests.RequestException, ValueError) as exc:
        log.warning("upstream %s: cannot start sign-in: %s", name, exc)
        return _refusal(f"{provider.title} cannot be reached right now. Try again later.", 502)
    return response


@blueprint.get("/login/upstream/<name>/callback")
def callback(name: str) -> BaseResponse:
    """Finish signing in with provider `name`, or show the sign-in page saying why not."""
    provider = _provider(name)
    db, ip = context.db(), context.client_ip()

    def failed(reason: str, message: str, status: int, **details: object) -> Response:
        db.rollback()
        audit.record(
            db,
            "login.failed",
            actor=None,
            ip=ip,
            details={"provider": name, "reason": reason, **details},
        )
        db.commit()
        return _refusal(message, status)

    client = _current().client(name)
    try:
        _check_answer(client, provider)
        token = client.authorize_access_token()
        claims = fetch_claims(client, provider, token)
    except OAuthError as exc:
        if exc.error in ("mismatching_state", "mismatching_issuer"):
            return failed(
                "bad-state" if exc.error == "mismatching_state" else "bad-issuer",
                "This sign-in expired or was not started here. Please try again.",
                400,
            )
        if exc.error == "access_denied":
            return failed("denied", f"Sign-in with {provider.title} was cancelled.", 403)
        return failed(
            "provider-error",
            f"{provider.title} refused the sign-in ({exc.error}). Please try again.",
            502,
            error=str(exc.error)[:64],
        )
    except (requests.RequestException, ValueError, KeyError) as exc:
        # joserfc's errors (a bad ID token signature, issuer, audience or nonce) are
        # ValueErrors too; none of them is the person's fault or theirs to fix.
        log.warning("upstream %s: sign-in failed: %s", name, exc)
        return failed(
            "provider-error",
            f"Signing in with {provider.title} failed. Please try again.",
            502,
            error=type(exc).__name__,
        )
    details = {"provider": name, "issuer": claims.issuer, "subject": claims.subject}
    try:
        user = sign_in(db, provider, claims, ip=ip)
    except Refused as refused:
        return failed(refused.reason, refused.message, 403, **details)
    audit.record(db, "login.succeeded", actor=user, ip=ip, target=user.id, details=details)
    next_url = safe_next(session.get(_NEXT))
    sessions.start(user)  # clears the session, and with it the state Authlib kept
    db.commit()
    return redirect(next_url, 303)


def _check_answer(client: Any, provider: UpstreamProvider) -> None:
    """Refuse an answer this browser did not ask for, before anything goes to the network;
    then (RFC 9207) one whose `iss` is not the issuer the person was sent to (mix-up)."""
    if client.framework.get_state_data(session, request.args.get("state")) is None:
        raise MismatchingStateError()
    if provider.type != "oidc":
        return
    metadata = client.load_server_metadata()
    iss = request.args.get("iss")
    required = metadata.get("authorization_response_iss_parameter_supported") is True
    if (iss is not None or required) and iss != metadata.get("issuer"):
        # This sign-in is spoilt: its state must not serve a second, corrected answer.
        client.framework.clear_state_data(session, request.args.get("state"))
        raise OAuthError(error="mismatching_issuer", description="the answer's iss is wrong")


def fetch_claims(
    client: Any, provider: UpstreamProvider, token: Mapping[str, Any]
) -> UpstreamClaims:
    """The person's claims from an OpenID Connect ID token and userinfo, or GitHub's API.

    Raises `OAuthError`, `requests.RequestException`, `KeyError` or `ValueError` when the
    provider's answers are missing or inconsistent.
    """
    if provider.type == "github":
        return github_claims(
            provider,
            client.get("user", token=token).json(),
            client.get("user/emails", token=token).json(),
            client.get("user/orgs", token=token).json() if provider.uses_groups else [],
        )
    id_token = token.get("userinfo")
    if not id_token:
        # Without a checked ID token there is nothing binding the answer to this sign-in.
        raise OAuthError(error="missing_id_token", description="no ID token in the answer")
    info: dict[str, Any] = dict(id_token)
    metadata = client.load_server_metadata()
    if metadata.get("userinfo_endpoint"):
        userinfo = client.userinfo(token=token)
        if userinfo.get("sub") != id_token["sub"]:
            raise OAuthError(error="userinfo_mismatch", description="userinfo is someone else")
        info.update(userinfo)
    return oidc_claims(provider, id_token["iss"], info)


def oidc_claims(provider: UpstreamProvider, issuer: str, info: Mapping[str, Any]) -> UpstreamClaims:
    """Claims from a checked ID token merged with userinfo; `email_verified` must be `true`."""
    groups = info.get(provider.groups_claim) or []
    if isinstance(groups, str):
        groups = groups.split()
    email = info.get("email")
    return UpstreamClaims(
        issuer=issuer,
        subject=str(info["sub"]),
        email=email if isinstance(email, str) else None,
        # Anything but a JSON true (a missing claim, "true" as a string) is unverified.
        email_verified=info.get("email_verified") is True,
        username=info.get("preferred_username") or None,
        groups=frozenset(str(g) for g in groups if isinstance(g, str | int)),
    )


def github_claims(
    provider: UpstreamProvider,
    user: Mapping[str, Any],
    emails: Sequence[Mapping[str, Any]],
    orgs: Sequence[Mapping[str, Any]],
) -> UpstreamClaims:
    """Claims from GitHub's `/user`, `/user/emails` and `/user/orgs` answers.

    The subject is the numeric account id, which never changes (the login can); the email is
    the primary address, verified only if GitHub says so.
    """
    primary = next((e for e in emails if e.get("primary")), None)
    return UpstreamClaims(
        issuer=provider.url,
        subject=str(int(user["id"])),
        email=primary.get("email") if primary else None,
        email_verified=bool(primary and primary.get("verified") is True),
        username=user.get("login") or None,
        groups=frozenset(str(o["login"]) for o in orgs if o.get("login")),
    )
