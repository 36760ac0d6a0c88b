"""Settings for the upstream sign-in providers: OpenID Connect by discovery URL, and GitHub.

`DEVSPACE_UPSTREAM_PROVIDERS` names the providers (`corp,github`); each one's settings are
`DEVSPACE_UPSTREAM_<NAME>_<KEY>` variables, or keys of an `[upstream.<name>]` table in the
configuration file (flattened to `upstream_<name>_<key>` when the file is read):

| key | meaning |
|---|---|
| `type` | `oidc` (default) or `github` |
| `title` | the button's label (default: the name, capitalised) |
| `discovery_url` | OIDC only: `https://…/.well-known/openid-configuration` (required) |
| `url` | GitHub only: a GitHub Enterprise Server address (default: github.com) |
| `client_id`, `client_secret` or `client_secret_file` | the client registration (required) |
| `scopes` | space-separated (default: `openid email profile`; GitHub `read:user user:email`) |
| `allowed_domains` | comma-separated: only verified emails at these domains may sign in |
| `allowed_groups` | comma-separated: only members of one of these groups may sign in |
| `groups_claim` | OIDC only: the claim holding the groups (default `groups`) |
| `admin_group` | members are admins; when set, people who leave it are demoted at sign-in |
| `link_verified_email` | `true`: a first sign-in links the one account with that verified email |

Set `link_verified_email` only for a provider that owns its users' email domains (a company
directory); a provider where anyone can claim an address could take over accounts.

For GitHub, groups are organisation logins (`read:org` is added to the scopes when a group
setting is used).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

NAME = re.compile(r"[a-z][a-z0-9]{0,31}")
KEYS = (
    "type",
    "title",
    "discovery_url",
    "url",
    "client_id",
    "client_secret",
    "client_secret_file",
    "scopes",
    "allowed_domains",
    "allowed_groups",
    "groups_claim",
    "admin_group",
    "link_verified_email",
)
TYPES = ("oidc", "github")
GITHUB = "https://github.com"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class UpstreamProvider:
    """One configured upstream provider. Built by `parse_providers`, which checks it."""

    name: str
    type: str
    title: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    discovery_url: str = ""
    """OIDC: the discovery document. Empty for GitHub."""
    url: str = GITHUB
    """GitHub: the web address (github.com or a GitHub Enterprise Server)."""
    allowed_domains: frozenset[str] = frozenset()
    allowed_groups: frozenset[str] = frozenset()
    groups_claim: str = "groups"
    admin_group: str | None = None
    link_verified_email: bool = False

    @property
    def uses_groups(self) -> bool:
        """True if sign-in needs the person's groups (an allow-list or an admin group)."""
        return bool(self.allowed_groups) or self.admin_group is not None


def _list(raw: str | None) -> frozenset[str]:
    return frozenset(item.strip() for item in (raw or "").split(",") if item.strip())


def _https_url(raw: str) -> str | None:
    """Why `raw` is not an acceptable provider URL, or None."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"is {raw!r}: use an https:// URL"
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        # Tokens and the client secret would cross the network in the clear.
        return f"is plain http on {parts.hostname}: use https://"
    return None


def parse_providers(
    raw: Callable[[str], str | None], problem: Callable[[str, str], None]
) -> tuple[UpstreamProvider, ...]:
    """The providers the settings describe.

    `raw(key)` returns a setting (`upstream_providers`, `upstream_<name>_<key>`) or None;
    `problem(key, message)` records what is wrong with one. Returns the providers that are
    valid; the caller refuses to start if any problem was recorded.
    """
    names = [n.strip() for n in (raw("upstream_providers") or "").split(",") if n.strip()]
    providers: list[UpstreamProvider] = []
    for name in names:
        if not NAME.fullmatch(name) or name in {p.name for p in providers}:
            problem(
                "upstream_providers",
                f"has {name!r}: use distinct names of lower-case letters and digits",
            )
            continue
        provider = _provider(name, functools.partial(_prefixed, raw, f"upstream_{name}_"), problem)
        if provider is not None:
            providers.append(provider)
    return tuple(providers)


def _prefixed(raw: Callable[[str], str | None], prefix: str, key: str) -> str | None:
    return raw(prefix + key)


def _provider(
    name: str, get: Callable[[str], str | None], problem: Callable[[str, str], None]
) -> UpstreamProvider | None:
    def bad(key: str, message: str) -> None:
        problem(f"upstream_{name}_{key}", message)

    kind = (get("type") or "oidc").strip().lower()
    if kind not in TYPES:
        bad("type", f"is {kind!r}: use one of {', '.join(TYPES)}")
        return None
    client_id = (get("client_id") or "").strip()
    if not client_id:
        bad("client_id", "is not set: set it to the client id registered at the provider")
    secret = _secret(get, bad)
    discovery_url, url = "", GITHUB
    if kind == "oidc":
        discovery_url = (get("discovery_url") or "").strip()
        if not discovery_url:
            bad("discovery_url", "is not set: set it to the provider's discovery URL")
        elif why := _https_url(discovery_url):
            bad("discovery_url", why)
    else:
        url = (get("url") or GITHUB).strip().rstrip("/")
        if why := _https_url(url):
            bad("url", why)
    default_scopes = "openid email profile" if kind == "oidc" else "read:user user:email"
    scopes = tuple((get("scopes") or default_scopes).split())
    if kind == "oidc" and "openid" not in scopes:
        bad("scopes", "must include openid: without it there is no ID token to check")
    link = (get("link_verified_email") or "false").strip().lower()
    if link not in ("true", "false"):
        bad("link_verified_email", f"is {link!r}: use true or false")
    if not client_id or not secret:
        return None
    return UpstreamProvider(
        name=name,
        type=kind,
        title=(get("title") or "").strip() or ("GitHub" if kind == "github" else name.title()),
        client_id=client_id,
        client_secret=secret,
        scopes=scopes,
        discovery_url=discovery_url,
        url=url,
        allowed_domains=frozenset(d.lower().lstrip("@") for d in _list(get("allowed_domains"))),
        allowed_groups=_list(get("allowed_groups")),
        groups_claim=(get("groups_claim") or "groups").strip(),
        admin_group=(get("admin_group") or "").strip() or None,
        link_verified_email=link == "true",
    )


def _secret(get: Callable[[str], str | None], bad: Callable[[str, str], None]) -> str:
    direct, path = get("client_secret"), get("client_secret_file")
    if direct and path:
        bad("client_secret", "and client_secret_file are both set: keep one")
        return ""
    if path:
        try:
            direct = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            bad("client_secret_file", f"names {path}, which cannot be read ({exc.strerror})")
            return ""
    if not direct:
        # Never a default: a guessable secret lets anyone redeem codes as this server.
        bad("client_secret", "is not set: set it (or client_secret_file) to the client secret")
        return ""
    return direct.strip()
