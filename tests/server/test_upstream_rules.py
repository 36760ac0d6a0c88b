"""Upstream sign-in without a browser: provider settings, claim mapping, account rules.

The end-to-end flows are in test_upstream_browser.py; these pin down each rule, including
GitHub's mapping (GitHub itself cannot be reached from the test machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from devspace_server import accounts
from devspace_server.auth.identities import Refused, UpstreamClaims, sign_in, username_candidates
from devspace_server.auth.providers import UpstreamProvider
from devspace_server.auth.upstream import github_claims, github_endpoints, oidc_claims
from devspace_server.config import Config, load_config
from devspace_server.context import state
from devspace_server.errors import ConfigError
from devspace_server.models import AuditEvent, Identity, Role, User
from testbed.process import free_port

SECRET = "a-client-secret-for-the-tests-0123456789"  # noqa: S105 - a test secret
ISSUER = "https://idp.example.com"


def provider(**overrides: object) -> UpstreamProvider:
    fields: dict[str, object] = {
        "name": "corp",
        "type": "oidc",
        "title": "Corp",
        "client_id": "devspace",
        "client_secret": SECRET,
        "scopes": ("openid", "email"),
        "discovery_url": f"{ISSUER}/.well-known/openid-configuration",
    }
    return UpstreamProvider(**(fields | overrides))  # type: ignore[arg-type]


def claims(subject: str = "s1", **overrides: object) -> UpstreamClaims:
    fields: dict[str, object] = {
        "issuer": ISSUER,
        "subject": subject,
        "email": "ann@example.com",
        "email_verified": True,
        "username": "ann",
    }
    return UpstreamClaims(**(fields | overrides))  # type: ignore[arg-type]


# Settings ----------------------------------------------------------------------------------


def corp_env(settings: dict[str, str], **values: str) -> dict[str, str]:
    env = settings | {
        "DEVSPACE_UPSTREAM_PROVIDERS": "corp",
        "DEVSPACE_UPSTREAM_CORP_DISCOVERY_URL": f"{ISSUER}/.well-known/openid-configuration",
        "DEVSPACE_UPSTREAM_CORP_CLIENT_ID": "devspace",
        "DEVSPACE_UPSTREAM_CORP_CLIENT_SECRET": SECRET,
    }
    return env | {f"DEVSPACE_UPSTREAM_CORP_{k.upper()}": v for k, v in values.items()}


def test_a_provider_from_the_environment(settings: dict[str, str]) -> None:
    env = corp_env(
        settings,
        allowed_domains="Example.com, @corp.example",
        allowed_groups="devs,ops",
        admin_group="admins",
    )
    [corp] = load_config(env).upstream
    assert corp.title == "Corp"
    assert corp.scopes == ("openid", "email", "profile")
    assert corp.allowed_domains == {"example.com", "corp.example"}
    assert corp.allowed_groups == {"devs", "ops"}
    assert (corp.admin_group, corp.link_verified_email) == ("admins", False)
    assert SECRET not in repr(corp)


def test_providers_from_the_file_with_a_secret_file(
    settings: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "devspace.toml").write_text(
        f"""
[upstream.corp]
discovery_url = "{ISSUER}/.well-known/openid-configuration"
client_id = "devspace"
client_secret_file = "{tmp_path / "secret"}"
allowed_groups = ["devs", "ops"]
link_verified_email = true

[upstream.github]
type = "github"
client_id = "Iv1.abc"
client_secret = "{SECRET}"
"""
    )
    config = load_config(settings | {"DEVSPACE_CONFIG_FILE": str(tmp_path / "devspace.toml")})
    corp, github = config.upstream
    assert (corp.client_secret, corp.allowed_groups, corp.link_verified_email) == (
        SECRET,
        frozenset({"devs", "ops"}),
        True,
    )
    assert (github.type, github.title, github.url) == ("github", "GitHub", "https://github.com")
    assert github.scopes == ("read:user", "user:email")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"client_secret": ""}, "DEVSPACE_UPSTREAM_CORP_CLIENT_SECRET is not set"),
        ({"client_id": ""}, "DEVSPACE_UPSTREAM_CORP_CLIENT_ID is not set"),
        ({"discovery_url": ""}, "DEVSPACE_UPSTREAM_CORP_DISCOVERY_URL is not set"),
        (
            {"discovery_url": "http://idp.example.com/.well-known/openid-configuration"},
            "is plain http on idp.example.com",
        ),
        ({"type": "saml"}, "DEVSPACE_UPSTREAM_CORP_TYPE is 'saml'"),
        ({"scopes": "email profile"}, "must include openid"),
        ({"link_verified_email": "yes"}, "use true or false"),
        ({"client_secret_file": "/nonexistent/secret"}, "are both set"),
    ],
)
def test_unsafe_provider_settings_are_refused(
    settings: dict[str, str], values: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(corp_env(settings, **values))
    assert problem in str(caught.value)


def test_provider_names_must_be_plain_and_distinct(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="use distinct names"):
        load_config(corp_env(settings) | {"DEVSPACE_UPSTREAM_PROVIDERS": "corp,Corp_2"})
    with pytest.raises(ConfigError, match="use distinct names"):
        load_config(corp_env(settings) | {"DEVSPACE_UPSTREAM_PROVIDERS": "corp,corp"})


def test_unknown_keys_in_an_upstream_table_are_refused(
    settings: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "devspace.toml").write_text('[upstream.corp]\nclient_sekret = "x"\n')
    with pytest.raises(ConfigError, match=r"\[upstream.corp\] has unknown keys client_sekret"):
        load_config(settings | {"DEVSPACE_CONFIG_FILE": str(tmp_path / "devspace.toml")})


# Claims ------------------------------------------------------------------------------------


@pytest.mark.parametrize("verified", [False, None, "true", 1])
def test_only_a_json_true_email_verified_counts(verified: object) -> None:
    info = {"sub": "s1", "email": "ann@example.com"}
    if verified is not None:
        info["email_verified"] = verified  # type: ignore[assignment]
    assert oidc_claims(provider(), ISSUER, info).email_verified is False
    assert oidc_claims(provider(), ISSUER, info | {"email_verified": True}).email_verified


def test_groups_come_from_the_configured_claim() -> None:
    info = {"sub": "s1", "roles": ["devs", 7, {"x": 1}], "groups": ["ignored"]}
    assert oidc_claims(provider(groups_claim="roles"), ISSUER, info).groups == {"devs", "7"}
    assert oidc_claims(provider(), ISSUER, {"sub": "s1", "groups": "a b"}).groups == {"a", "b"}


def test_github_maps_to_its_immutable_id_and_verified_primary_email() -> None:
    gh = provider(type="github", url="https://github.com", discovery_url="")
    emails = [
        {"email": "old@example.com", "primary": False, "verified": True},
        {"email": "octo@example.com", "primary": True, "verified": False},
    ]
    mapped = github_claims(gh, {"id": 583231, "login": "octocat"}, emails, [{"login": "acme"}])
    assert mapped == UpstreamClaims(
        issuer="https://github.com",
        subject="583231",
        email="octo@example.com",
        email_verified=False,
        username="octocat",
        groups=frozenset({"acme"}),
    )
    emails[1]["verified"] = True
    assert github_claims(gh, {"id": 583231, "login": "octocat"}, emails, []).email_verified


def test_github_enterprise_endpoints() -> None:
    assert github_endpoints("https://github.com")["api_base_url"] == "https://api.github.com/"
    ghes = github_endpoints("https://ghe.example.com")
    assert ghes == {
        "authorize_url": "https://ghe.example.com/login/oauth/authorize",
        "access_token_url": "https://ghe.example.com/login/oauth/access_token",
        "api_base_url": "https://ghe.example.com/api/v3/",
    }


def test_usernames_come_from_the_hint_then_the_email() -> None:
    assert username_candidates(claims(username="Ann Lee")) == ["ann-lee", "ann"]
    assert username_candidates(claims(username=None, email=None)) == ["user"]


# Accounts ----------------------------------------------------------------------------------


@pytest.fixture
def db(app: Flask) -> Iterator[Session]:
    with app.app_context(), state().sessions() as session:
        yield session


def test_the_same_subject_is_the_same_user_whatever_its_email(db: Session) -> None:
    first = sign_in(db, provider(), claims())
    again = sign_in(db, provider(), claims(email="new@example.com", username="other"))
    assert again.id == first.id
    assert again.email == "new@example.com"  # kept current for an upstream-only account
    other_issuer = sign_in(db, provider(), claims(issuer="https://other.example.com"))
    assert other_issuer.id != first.id


def test_taken_usernames_get_a_suffix(db: Session) -> None:
    accounts.create_user(db, username="ann", role=Role.USER)
    assert sign_in(db, provider(), claims()).username == "ann-2"


def test_linking_needs_trust_a_verified_email_and_one_unclaimed_account(db: Session) -> None:
    ann = accounts.create_user(
        db, username="annl", role=Role.ADMIN, email="Ann@example.com", email_verified=True
    )
    trusted = provider(link_verified_email=True)
    untrusted = provider(name="other", link_verified_email=False)
    assert sign_in(db, untrusted, claims("a", issuer="https://other.example.com")).id != ann.id
    db.delete(db.scalars(select(User).where(User.username == "ann")).one())  # no ambiguity
    assert sign_in(db, trusted, claims("b", email_verified=False)).id != ann.id
    assert sign_in(db, trusted, claims("c")).id == ann.id
    # A second subject of the same issuer with the same address is another person.
    assert sign_in(db, trusted, claims("d")).id != ann.id


def test_linking_never_guesses_between_two_accounts(db: Session) -> None:
    for name in ("ann1", "ann2"):
        accounts.create_user(
            db, username=name, role=Role.USER, email="ann@example.com", email_verified=True
        )
    user = sign_in(db, provider(link_verified_email=True), claims())
    assert user.username == "ann"


@pytest.mark.parametrize(
    ("rules", "person", "reason"),
    [
        ({"allowed_domains": frozenset({"example.com"})}, {"email": "a@evil.com"}, "domain"),
        ({"allowed_domains": frozenset({"example.com"})}, {"email_verified": False}, "domain"),
        ({"allowed_domains": frozenset({"example.com"})}, {"email": None}, "domain"),
        ({"allowed_groups": frozenset({"devs"})}, {"groups": frozenset({"ops"})}, "group"),
    ],
)
def test_allow_lists_refuse(
    db: Session, rules: dict[str, object], person: dict[str, object], reason: str
) -> None:
    with pytest.raises(Refused) as refused:
        sign_in(db, provider(**rules), claims(**person))
    assert refused.value.reason == f"{reason}-not-allowed"
    assert db.scalars(select(User)).all() == []


def test_the_admin_group_promotes_and_demotes_but_only_when_set(db: Session) -> None:
    admins = provider(admin_group="admins")
    assert sign_in(db, admins, claims(groups=frozenset({"admins"}))).role is Role.ADMIN
    assert sign_in(db, provider(), claims()).role is Role.ADMIN  # no admin group: untouched
    assert sign_in(db, admins, claims()).role is Role.USER


def test_a_disabled_user_is_refused(db: Session) -> None:
    sign_in(db, provider(), claims()).disabled = True
    with pytest.raises(Refused) as refused:
        sign_in(db, provider(), claims())
    assert refused.value.reason == "disabled"
    assert len(db.scalars(select(Identity)).all()) == 1


# Pages -------------------------------------------------------------------------------------


@pytest.fixture
def corp_app(settings: dict[str, str], make_app: object) -> Flask:
    # A provider whose discovery URL nobody listens on: a provider that is down.
    url = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"
    config: Config = load_config(corp_env(settings, discovery_url=url, title="Corp SSO"))
    return make_app(config)  # type: ignore[operator, no-any-return]


def test_the_sign_in_page_offers_the_providers_as_plain_links(corp_app: Flask) -> None:
    html = corp_app.test_client().get("/login?next=/spaces").get_data(as_text=True)
    assert '<a class="button" href="/login/upstream/corp?next=/spaces">' in html
    assert "Sign in with Corp SSO" in html
    assert "<script" not in html


def test_an_unknown_provider_is_not_found(corp_app: Flask) -> None:
    client: FlaskClient = corp_app.test_client()
    assert client.get("/login/upstream/nope").status_code == 404
    assert client.get("/login/upstream/nope/callback").status_code == 404


def test_a_provider_that_is_down_gets_a_page_not_a_crash(corp_app: Flask) -> None:
    response = corp_app.test_client().get("/login/upstream/corp")
    assert response.status_code == 502
    assert "Corp SSO cannot be reached right now" in response.get_data(as_text=True)


def test_a_callback_without_a_started_sign_in_is_refused_and_audited(corp_app: Flask) -> None:
    response = corp_app.test_client().get("/login/upstream/corp/callback?code=x&state=y")
    assert response.status_code == 400
    with corp_app.app_context(), state().sessions() as session:
        event = session.scalars(select(AuditEvent)).one()
        assert (event.action, event.details["reason"]) == ("login.failed", "bad-state")
