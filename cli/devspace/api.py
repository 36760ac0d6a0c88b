"""The devspace server's HTTP API, as the CLI uses it: requests in, `devspace.errors` out.

`Api` sends authenticated requests for one server. It refreshes the access token shortly before
it expires, or once after a 401, under the server's rotation lock (`credentials.rotation_lock`):
inside the lock it reads the stored credentials again, and uses what another command already
rotated instead of spending a refresh token twice (which the server answers by revoking the
whole sign-in).

Every failure leaves here as a `DevspaceError`: 401 and 403 as `AuthError`, other error answers
as `ServerError` carrying the problem's message (RFC 9457), and network failures as
`Unreachable`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from devspace import __version__
from devspace.credentials import Credentials, Store, rotation_lock
from devspace.errors import AuthError, DevspaceError, NotFound, ServerError, SshError

if TYPE_CHECKING:
    import requests

CLIENT_ID = "devspace-cli"
TIMEOUT = (10, 60)  # seconds to connect, seconds between bytes
_MAX_BODY_IN_LOG = 2000
log = logging.getLogger(__name__)


class Unreachable(SshError):
    """The server could not be reached (DNS, refused, TLS, timeout): exit code 5."""


def login_hint(server: str) -> str:
    """The command that signs in to `server` again."""
    return f"run `devspace login --server {server}`"


def new_session() -> requests.Session:
    """A requests session that says it is devspace."""
    import requests  # noqa: PLC0415 - about 100 ms to import; not on the `--help` path

    session = requests.Session()
    session.headers["User-Agent"] = f"devspace/{__version__}"
    return session


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """Send one request. Raises `Unreachable` when no answer comes back."""
    import requests  # noqa: PLC0415

    log.debug("%s %s", method, url)
    try:
        response = session.request(method, url, timeout=TIMEOUT, **kwargs)
    except requests.exceptions.SSLError as exc:
        raise Unreachable(f"TLS with {url} failed: {_short(exc)}") from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise Unreachable(
            f"Cannot reach {url}: {_short(exc)}. Check the server address and your network."
        ) from exc
    except requests.RequestException as exc:
        raise Unreachable(f"The request to {url} failed: {_short(exc)}") from exc
    log.debug("-> %s %s", response.status_code, response.text[:_MAX_BODY_IN_LOG])
    return response


def _short(exc: BaseException) -> str:
    # urllib3 nests the useful part ("Connection refused") several reprs deep.
    text = str(exc)
    for marker in ("Errno", "NameResolutionError", "timed out"):
        at = text.find(marker)
        if at >= 0:
            return text[at:].split(")", maxsplit=1)[0].strip(" '\"")
    return text[:200]


def problem_message(response: requests.Response) -> str:
    """One line a person can act on, from an error answer (problem+json, OAuth or other)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if body.get("detail"):
            message = str(body["detail"])
            fields = body.get("errors")
            if isinstance(fields, list) and fields:
                details = "; ".join(
                    f"{e.get('field') or 'body'}: {e.get('detail')}"
                    for e in fields
                    if isinstance(e, dict)
                )
                message = f"{message} {details}"
            return message
        if body.get("error"):  # an OAuth error answer (RFC 6749 section 5.2)
            return str(body.get("error_description") or body["error"])
    return f"The server answered {response.status_code} {response.reason}."


def fail(response: requests.Response, server: str) -> DevspaceError:
    """The error to raise for an unsuccessful `response` from `server`."""
    message = problem_message(response)
    if response.status_code == 401:
        return AuthError(f"Not logged in to {server}, or the sign-in ended: {login_hint(server)}.")
    if response.status_code == 403:
        return AuthError(f"{message} ({login_hint(server)} with the scope it needs).")
    if response.status_code == 404:
        return NotFound(message)
    return ServerError(message)


class Api:
    """Authenticated requests to one server, with the credentials in `store`."""

    def __init__(self, server: str, store: Store | None = None) -> None:
        self.server = server
        self.store = store or Store()
        self.session = new_session()

    def credentials(self) -> Credentials:
        """The stored credentials. Raises `AuthError` when there are none."""
        found = self.store.load(self.server)
        if found is None:
            raise AuthError(f"You are not logged in to {self.server}: {login_hint(self.server)}.")
        return found

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send `method path` (under `/api/v1`) and return its JSON body (None when empty).

        Raises `AuthError`, `ServerError` or `Unreachable`.
        """
        credentials = self.credentials()
        if credentials.expiring() and credentials.refresh_token:
            credentials = self.refresh(credentials.access_token)
        response = self._send(method, path, credentials, **kwargs)
        if response.status_code == 401 and credentials.refresh_token:
            # Expired early, revoked, or rotated by another command since we read it.
            credentials = self.refresh(credentials.access_token)
            response = self._send(method, path, credentials, **kwargs)
        if not response.ok:
            raise fail(response, self.server)
        return response.json() if response.content else None

    def _send(
        self, method: str, path: str, credentials: Credentials, **kwargs: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {credentials.access_token}"}
        return send(self.session, method, f"{self.server}/api/v1{path}", headers=headers, **kwargs)

    def refresh(self, rejected: str) -> Credentials:
        """Fresh credentials in place of those whose access token was `rejected` (or is about
        to expire). Raises `AuthError` when the sign-in is over."""
        with rotation_lock(self.server):
            current = self.credentials()
            if current.access_token != rejected and not current.expiring():
                log.debug("another command already refreshed the token")
                return current
            if not current.refresh_token:
                raise AuthError(f"The token for {self.server} expired: {login_hint(self.server)}.")
            form = {
                "grant_type": "refresh_token",
                "refresh_token": current.refresh_token,
                "client_id": CLIENT_ID,
            }
            response = send(self.session, "POST", f"{self.server}/oauth/token", data=form)
            if response.status_code in (400, 401):
                # invalid_grant: the refresh token expired or the sign-in was revoked.
                self.store.delete(self.server)
                raise AuthError(
                    f"Your sign-in to {self.server} has ended ({problem_message(response)}): "
                    f"{login_hint(self.server)}."
                )
            if not response.ok:
                raise fail(response, self.server)
            fresh = token_credentials(self.server, response.json(), current.username)
            self.store.save(fresh)
            return fresh


def token_credentials(server: str, tokens: dict[str, Any], username: str | None) -> Credentials:
    """Credentials from a token endpoint answer (RFC 6749 section 5.1)."""
    expires_in = tokens.get("expires_in")
    return Credentials(
        server=server,
        access_token=str(tokens["access_token"]),
        refresh_token=tokens.get("refresh_token"),
        expires_at=time.time() + float(expires_in) if expires_in else None,
        scope=str(tokens.get("scope", "")),
        username=username,
    )
