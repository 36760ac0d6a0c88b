"""A local stand-in for GitHub's OAuth app flow and the three API calls devspace makes.

GitHub cannot be reached from the test machine, so this plays a GitHub Enterprise Server at
`http://127.0.0.1:<port>` (web at `/login/oauth/…`, API at `/api/v3/`), following GitHub's
documented behaviour where it matters to a client: the token endpoint answers form-encoded
unless asked for JSON, reports a bad code as HTTP 200 with `error=bad_verification_code`,
checks a PKCE S256 verifier when a challenge was sent, and codes are single-use. It is a
fake: it proves devspace's GitHub code path end to end, not GitHub's own quirks beyond these.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass(frozen=True)
class GitHubUser:
    """An account: numeric id (immutable), login, password for the form, emails, orgs."""

    id: int
    login: str
    password: str
    emails: tuple[tuple[str, bool, bool], ...]
    """(address, primary, verified) as `/user/emails` lists them."""
    orgs: tuple[str, ...] = ()


@dataclass
class _Grant:
    user: GitHubUser
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str | None


@dataclass
class FakeGitHub:
    """The stand-in: `url` is its base address; `client_id`/`client_secret` its one app."""

    client_id: str
    client_secret: str
    users: dict[str, GitHubUser]
    codes: dict[str, _Grant] = field(default_factory=dict)
    tokens: dict[str, _Grant] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    """Every path asked for, in order; for tests that check what devspace called."""
    server: BaseWSGIServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    def start(self) -> FakeGitHub:
        """Serve on 127.0.0.1 and a free port, in a daemon thread."""
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.shutdown()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append(request.path)
        routes = {
            "/login/oauth/authorize": self._authorize,
            "/login/oauth/access_token": self._access_token,
            "/api/v3/user": self._user,
            "/api/v3/user/emails": self._emails,
            "/api/v3/user/orgs": self._orgs,
        }
        handler = routes.get(request.path)
        response = handler(request) if handler else Response("Not Found", 404)
        return response(environ, start_response)

    def _authorize(self, request: Request) -> Response:
        args = request.values
        if args.get("client_id") != self.client_id:
            return Response("unknown client", 404)
        if request.method == "GET":
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in args.items()
            )
            page = (
                "<!doctype html><title>Sign in to GitHub</title><h1>Sign in to GitHub</h1>"
                f'<form method="post">{fields}<label for="login">Username or email address'
                '</label><input id="login" name="login"><label for="password">Password</label>'
                '<input id="password" name="password" type="password">'
                '<button type="submit">Sign in</button></form>'
            )
            return Response(page, mimetype="text/html")
        user = self.users.get(args.get("login", ""))
        if user is None or user.password != args.get("password"):
            return Response("Incorrect username or password.", 401)
        if args.get("code_challenge") and args.get("code_challenge_method") != "S256":
            return Response("unsupported code_challenge_method", 400)
        code = secrets.token_hex(10)
        self.codes[code] = _Grant(
            user,
            self.client_id,
            args["redirect_uri"],
            args.get("scope", ""),
            args.get("code_challenge"),
        )
        query = urlencode({"code": code, "state": args.get("state", "")})
        return Response(status=302, headers={"Location": f"{args['redirect_uri']}?{query}"})

    def _access_token(self, request: Request) -> Response:
        form = request.form
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if request.authorization is not None:
            client_id, secret = request.authorization.username, request.authorization.password
        grant = self.codes.pop(form.get("code", ""), None)
        error = None
        if (client_id, secret) != (self.client_id, self.client_secret):
            error = "incorrect_client_credentials"
        elif not _redeemable(grant, form.get("redirect_uri"), form.get("code_verifier")):
            error = "bad_verification_code"
        if error or grant is None:
            body = {"error": error or "bad_verification_code"}
        else:
            token = "gho_" + secrets.token_hex(18)
            self.tokens[token] = grant
            body = {"access_token": token, "scope": grant.scope, "token_type": "bearer"}
        if "application/json" in request.headers.get("Accept", ""):
            return Response(json.dumps(body), mimetype="application/json")
        return Response(urlencode(body), mimetype="application/x-www-form-urlencoded")

    def _grant(self, request: Request) -> _Grant | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.tokens.get(token) if scheme.lower() in ("bearer", "token") else None

    def _api(self, request: Request, scope: str | None, body: object) -> Response:
        grant = self._grant(request)
        if grant is None:
            return _json({"message": "Requires authentication"}, 401)
        if scope is not None and scope not in grant.scope.replace(",", " ").split():
            return _json({"message": "Missing the scope " + scope}, 403)
        return _json(body, 200)

    def _user(self, request: Request) -> Response:
        grant = self._grant(request)
        user = grant.user if grant else None
        return self._api(request, None, {"id": user.id, "login": user.login} if user else {})

    def _emails(self, request: Request) -> Response:
        grant = self._grant(request)
        emails = grant.user.emails if grant else ()
        listed = [{"email": e, "primary": p, "verified": v} for e, p, v in emails]
        return self._api(request, "user:email", listed)

    def _orgs(self, request: Request) -> Response:
        grant = self._grant(request)
        orgs = [{"login": o} for o in grant.user.orgs] if grant else []
        return self._api(request, "read:org", orgs)


def _redeemable(grant: _Grant | None, redirect_uri: str | None, verifier: str | None) -> bool:
    """GitHub's checks on a code: it exists, the redirect URI matches, and so does PKCE."""
    if grant is None or grant.redirect_uri != redirect_uri:
        return False
    return grant.challenge is None or grant.challenge == _s256(verifier)


def _json(body: object, status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _s256(verifier: str | None) -> str:
    digest = hashlib.sha256((verifier or "").encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
