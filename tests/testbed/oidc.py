"""A real OpenID Connect provider for the tests: the npm package `oidc-provider` on loopback.

`.ci/bootstrap` installs it into `tests/testbed/oidc/node_modules` (`npm ci`, from the
committed package-lock.json). `OidcProvider.start()` runs `provider.js` with the given client
registrations and test accounts, on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.process import Process, StartError, wait_until

HERE = Path(__file__).parent / "oidc"


@dataclass(frozen=True)
class Account:
    """A person at the provider. `groups` is sent as the `groups` claim."""

    login: str
    password: str
    email: str
    email_verified: bool
    groups: tuple[str, ...] = ()
    name: str = ""

    def claims(self) -> dict[str, Any]:
        """The account as provider.js reads it: claims plus the password."""
        return {
            "password": self.password,
            "sub": f"sub-{self.login}",
            "email": self.email,
            "email_verified": self.email_verified,
            "groups": list(self.groups),
            "name": self.name or self.login.title(),
        }


@dataclass(frozen=True)
class Client:
    """A confidential client registration (client_secret_basic, authorization code)."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass
class OidcProvider:
    """A running provider; `issuer` is its base URL, `discovery_url` its metadata document."""

    issuer: str
    process: Process

    @property
    def discovery_url(self) -> str:
        """The OpenID Connect discovery document's URL."""
        return f"{self.issuer}/.well-known/openid-configuration"

    @classmethod
    def start(cls, directory: Path, clients: list[Client], accounts: list[Account]) -> OidcProvider:
        """Start provider.js with `clients` and `accounts`; raise StartError if it fails."""
        node = shutil.which("node")
        if node is None:
            raise StartError("Node.js is not installed (apt-get install nodejs)")
        if not (HERE / "node_modules" / "oidc-provider").is_dir():
            raise StartError(f"oidc-provider is not installed: run `npm ci` in {HERE}")
        settings = directory / "oidc-settings.json"
        settings.write_text(
            json.dumps(
                {
                    "clients": [
                        {
                            "client_id": c.client_id,
                            "client_secret": c.client_secret,
                            "redirect_uris": list(c.redirect_uris),
                            "grant_types": ["authorization_code"],
                            "response_types": ["code"],
                        }
                        for c in clients
                    ],
                    "accounts": {a.login: a.claims() for a in accounts},
                }
            )
        )
        log = directory / "oidc-provider.log"
        process = Process("oidc-provider", [node, str(HERE / "provider.js"), str(settings)], log)
        issuer: list[str] = []

        def ready() -> bool:
            if not issuer:
                for line in log.read_text().splitlines():
                    if line.startswith('{"issuer"'):
                        issuer.append(json.loads(line)["issuer"])
                if not issuer:
                    return False
            with urllib.request.urlopen(  # noqa: S310 - our own loopback http URL
                f"{issuer[0]}/.well-known/openid-configuration", timeout=2
            ) as response:
                return bool(response.status == 200)

        try:
            wait_until(ready, what="oidc-provider", timeout=30, process=process)
        except StartError:
            process.stop()
            raise
        return cls(issuer[0], process)

    def stop(self) -> None:
        """Stop the provider."""
        self.process.stop()
