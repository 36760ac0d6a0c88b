"""Signing in through real upstream providers, in a real browser, as a person would.

A headless Chromium (with JavaScript off: the pages must work without it) clicks "Sign in
with Test IdP" on devspace's sign-in page, fills in the login form of a real `oidc-provider`
and lands back on devspace. devspace is served over real HTTP on `localhost`, the provider on
`127.0.0.1`: two different sites, as in production, so cookie and redirect rules apply.
GitHub's code path runs against `testbed.github`, a local stand-in (GitHub is unreachable).

Fixtures (in conftest.py): ``live`` (the HTTP server; each test swaps in its own app),
``provider`` (the OpenID provider with ``ACCOUNTS``), ``github`` (the stand-in), ``browser``,
``page`` and ``serve``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route
from sqlalchemy import select

from devspace_server.context import state
from devspace_server.models import Identity, Role, User
from testbed.github import FakeGitHub
from testbed.oidc import OidcProvider

from .conftest import IDP_PASSWORD, NAME, TITLE, Serve
from .upstream_pages import (
    LiveServer,
    audit_actions,
    greeting,
    local_user,
    rows,
    sign_in,
    sign_out,
    tampered,
)


def idp_sign_in(page: Page, live: LiveServer, login: str) -> None:
    sign_in(page, live, TITLE, login, IDP_PASSWORD)


def test_a_person_signs_in_through_the_provider_and_again_as_the_same_user(
    serve: Serve, page: Page, live: LiveServer, provider: OidcProvider
) -> None:
    app = serve()
    idp_sign_in(page, live, "alice")
    assert greeting(page) == "Signed in as alice."

    [user] = rows(app, User)
    assert (user.username, user.email, user.email_verified, user.role) == (
        "alice",
        "alice@example.com",
        True,
        Role.USER,
    )
    assert user.password_hash is None
    [identity] = rows(app, Identity)
    assert (identity.issuer, identity.subject, identity.user_id) == (
        provider.issuer,
        "sub-alice",
        user.id,
    )

    sign_out(page)
    idp_sign_in(page, live, "alice")  # the provider remembers her: no form this time
    assert greeting(page) == "Signed in as alice."
    assert [u.id for u in rows(app, User)] == [user.id]
    succeeded = [d for a, d in audit_actions(app) if a == "login.succeeded"]
    assert succeeded == [{"provider": NAME, "issuer": provider.issuer, "subject": "sub-alice"}] * 2


def test_the_next_page_survives_the_trip_to_the_provider(
    serve: Serve, page: Page, live: LiveServer
) -> None:
    serve()
    page.goto(f"{live.url}/login?next=/?from=next")
    page.get_by_role("link", name=f"Sign in with {TITLE}").click()
    page.get_by_label("Login").fill("alice")
    page.get_by_label("Password").fill(IDP_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert page.url == f"{live.url}/?from=next"


def test_an_unverified_email_never_reaches_an_existing_account(
    serve: Serve, page: Page, live: LiveServer, browser: Browser
) -> None:
    # Even with email linking on: the provider does not vouch for mallory's address.
    app = serve(link_verified_email="true")
    bob = local_user(app, "bob", "bob@example.com", role=Role.ADMIN)

    idp_sign_in(page, live, "mallory")
    assert greeting(page) == "Signed in as mallory."
    assert rows(app, Identity, Identity.user_id == bob.id) == []
    [mallory] = rows(app, User, User.username == "mallory")
    assert (mallory.email, mallory.email_verified, mallory.role) == (
        "bob@example.com",
        False,
        Role.USER,
    )


def test_a_verified_email_links_only_where_the_provider_is_trusted_to(
    serve: Serve, page: Page, live: LiveServer, browser: Browser
) -> None:
    app = serve()
    local_user(app, "rob", "rob@example.com")
    idp_sign_in(page, live, "robert")
    assert greeting(page) == "Signed in as robert."  # not linked: a new account

    app = serve(link_verified_email="true")
    local_user(app, "roberta", "robert@example.com")
    other = browser.new_context(java_script_enabled=False)
    try:
        fresh = other.new_page()
        with app.app_context(), state().sessions() as session:
            # Start again without the first sign-in's identity, so this is a first sign-in.
            session.query(Identity).delete()
            session.query(User).filter(User.username == "robert").delete()
            session.commit()
        idp_sign_in(fresh, live, "robert")
        assert greeting(fresh) == "Signed in as rob."
    finally:
        other.close()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"allowed_domains": "example.com"},
            "Only people with a verified email address at example.com may sign in",
        ),
        ({"allowed_groups": "devs"}, "not in a group that may use devspace"),
    ],
)
def test_an_allow_list_refuses_with_a_page_that_says_why(
    serve: Serve, page: Page, live: LiveServer, setting: dict[str, str], message: str
) -> None:
    app = serve(**setting)
    idp_sign_in(page, live, "dave")
    assert message in greeting(page)
    assert page.get_by_role("link", name=f"Sign in with {TITLE}").is_visible()
    assert rows(app, User) == []
    [(action, details)] = audit_actions(app)
    assert action == "login.failed"
    assert details["reason"] in {"domain-not-allowed", "group-not-allowed"}

    page.context.clear_cookies()  # sign out at the provider too
    idp_sign_in(page, live, "alice")
    assert greeting(page) == "Signed in as alice."


def test_the_admin_group_makes_admins_and_leaving_it_demotes(
    serve: Serve, page: Page, live: LiveServer
) -> None:
    app = serve(admin_group="admins")
    idp_sign_in(page, live, "carol")
    assert greeting(page) == "Signed in as carol (admin)."

    app = serve(admin_group="operators")  # carol is not in it
    sign_out(page)
    idp_sign_in(page, live, "carol")
    assert greeting(page) == "Signed in as carol."
    assert [u.role for u in rows(app, User)] == [Role.USER]
    changes = [(d["from"], d["to"]) for a, d in audit_actions(app) if a == "user.role_changed"]
    assert changes == [("user", "admin"), ("admin", "user")]


def test_a_disabled_user_is_refused(serve: Serve, page: Page, live: LiveServer) -> None:
    app = serve()
    idp_sign_in(page, live, "alice")
    with app.app_context(), state().sessions() as session:
        session.scalars(select(User)).one().disabled = True
        session.commit()

    page.goto(live.url)
    assert page.url == f"{live.url}/login"  # the running session ended at once
    idp_sign_in(page, live, "alice")
    assert "This account is disabled" in greeting(page)
    assert audit_actions(app)[-1][1]["reason"] == "disabled"


def intercept_answer(
    page: Page, live: LiveServer, provider: OidcProvider, tamper: str | None
) -> list[str]:
    """Play a man in the middle on the provider's redirect back to devspace: change its
    `tamper` parameter, or (None) hold the answer back. Returns the answers seen."""
    seen: list[str] = []

    def handle(route: Route) -> None:
        # Playwright routes only the first request of a redirect chain, so follow the
        # provider's own redirects here, up to the one that leads back to devspace.
        response = route.fetch(max_redirects=0)
        location = response.headers.get("location", "")
        while location.startswith(provider.issuer):
            response = page.context.request.get(location, max_redirects=0)
            location = response.headers.get("location", "")
        if not location.startswith(f"{live.url}/login/upstream/"):
            route.fulfill(response=response)
        elif tamper is None:
            seen.append(location)
            route.fulfill(status=200, body="held back", content_type="text/plain")
        else:
            seen.append(location)
            route.fulfill(status=303, headers={"location": tampered(location, tamper)})

    page.route(f"{provider.issuer}/**", handle)
    return seen


@pytest.mark.parametrize("param", ["state", "iss"])
def test_a_tampered_answer_is_refused(
    serve: Serve, page: Page, live: LiveServer, provider: OidcProvider, param: str
) -> None:
    reason = {"state": "bad-state", "iss": "bad-issuer"}[param]
    app = serve()
    assert intercept_answer(page, live, provider, param) == []
    idp_sign_in(page, live, "alice")
    assert "not started here" in greeting(page)
    assert rows(app, User) == []
    assert [d["reason"] for _, d in audit_actions(app)] == [reason]


def test_an_answer_is_good_only_in_the_browser_that_asked(
    serve: Serve, page: Page, live: LiveServer, browser: Browser, provider: OidcProvider
) -> None:
    app = serve()
    answers = intercept_answer(page, live, provider, None)
    page.goto(f"{live.url}/login")
    page.get_by_role("link", name=f"Sign in with {TITLE}").click()
    page.get_by_label("Login").fill("alice")
    page.get_by_label("Password").fill(IDP_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    [answer] = answers

    # An attacker planting their own sign-in on a victim: the victim's browser never
    # started one, so the answer is refused there.
    victim = browser.new_context(java_script_enabled=False)
    try:
        other = victim.new_page()
        other.goto(answer)
        assert "not started here" in greeting(other)
        other.goto(live.url)
        assert other.url == f"{live.url}/login"
    finally:
        victim.close()
    assert rows(app, User) == []

    page.goto(answer)  # in the browser that asked, the same answer works
    assert greeting(page) == "Signed in as alice."


def test_cancelling_at_the_provider_says_so(serve: Serve, page: Page, live: LiveServer) -> None:
    serve()
    page.goto(f"{live.url}/login")
    page.get_by_role("link", name=f"Sign in with {TITLE}").click()
    page.get_by_role("button", name="Cancel").click()
    assert greeting(page) == f"Sign-in with {TITLE} was cancelled."


def test_a_person_signs_in_with_github_as_their_immutable_id(
    serve: Serve, page: Page, live: LiveServer, github: FakeGitHub
) -> None:
    app = serve(gh_allowed_groups="acme")
    sign_in(page, live, "GitHub", "octocat", IDP_PASSWORD, login_label="Username or email address")
    assert greeting(page) == "Signed in as octocat."
    [user] = rows(app, User)
    assert (user.email, user.email_verified) == ("octo@example.com", True)
    [identity] = rows(app, Identity)
    assert (identity.issuer, identity.subject) == (github.url, "583231")
    assert github.requests[-3:] == ["/api/v3/user", "/api/v3/user/emails", "/api/v3/user/orgs"]

    app = serve(gh_allowed_groups="initech")
    sign_out(page)
    sign_in(page, live, "GitHub", "octocat", IDP_PASSWORD, login_label="Username or email address")
    assert "not in a group that may use devspace" in greeting(page)


def test_the_sign_in_page_looks_right(
    serve: Serve, page: Page, live: LiveServer, tmp_path: Path
) -> None:
    serve()
    page.set_viewport_size({"width": 800, "height": 640})
    page.goto(f"{live.url}/login")
    shot = tmp_path / "sign-in.png"
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 5_000
    button = page.get_by_role("link", name=f"Sign in with {TITLE}").bounding_box()
    form = page.get_by_label("Username").bounding_box()
    assert button is not None
    assert form is not None
    assert button["y"] < form["y"]  # the provider first, the local form below
    assert abs(button["width"] - form["width"]) < 2  # same column, same width
