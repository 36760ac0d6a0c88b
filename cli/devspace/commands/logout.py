"""`devspace logout`: revoke the sign-in at the server (RFC 7009), forget its tokens and
delete the SSH key and certificate made for it."""

from __future__ import annotations

import logging

import click

from devspace.api import CLIENT_ID, Unreachable, new_session, send
from devspace.certificates import forget
from devspace.commands.common import server_option, which_server
from devspace.config import Settings
from devspace.credentials import Store, rotation_lock
from devspace.output import progress

log = logging.getLogger(__name__)


@click.command()
@server_option
def logout(server: str | None) -> None:
    """Sign out of a server: revoke its tokens there, delete them and its SSH key here."""
    settings = Settings.load()
    url = which_server(server, settings)
    store = Store()
    # Under the rotation lock, so a refresh running in another command cannot store a new
    # token after we deleted the old one.
    with rotation_lock(url):
        credentials = store.load(url)
        if credentials is None:
            progress(f"You were not logged in to {url}.")
        else:
            revoked = True
            if credentials.kind == "oauth":
                revoked = _revoke(url, credentials.refresh_token, credentials.access_token)
            store.delete(url)
            if credentials.kind == "personal":
                progress(
                    f"Logged out of {url}. The personal access token itself still works: "
                    "revoke it on the server if it should not."
                )
            elif revoked:
                progress(f"Logged out of {url}; its tokens are revoked.")
            else:
                progress(
                    f"Logged out of {url} here, but the server could not be told: its "
                    "tokens stay valid until they expire."
                )
        forget(url)  # its certificate would open SSH until it expires
    if settings.default_server == url:
        settings.default_server = None
        settings.save()


def _revoke(server: str, *tokens: str | None) -> bool:
    """Revoke each token; the refresh token first, which ends the whole sign-in."""
    session = new_session()
    done = True
    for token in tokens:
        if not token:
            continue
        form = {"token": token, "client_id": CLIENT_ID}
        try:
            response = send(session, "POST", f"{server}/oauth/revoke", data=form)
        except Unreachable as exc:
            log.debug("revocation failed: %s", exc)
            return False
        done = done and response.ok
    return done
