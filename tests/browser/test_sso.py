"""Single sign-on end to end: Chromium, NeoPain's live server and a real OpenID Provider
(panva/oidc-provider, OpenID Certified) started by the test, with PKCE required."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.sso.conftest import configure_sso
from tests.sso.provider import USERS, running_provider
from triage.models import AuditEvent, ExternalIdentity, Role, User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def provider(live_server, settings, unit):
    with running_provider(
        redirect_uri=f"{live_server.url}/oidc/callback/", post_logout_redirect_uri=f"{live_server.url}/login/"
    ) as running:
        configure_sso(settings, issuer=running.issuer, client_id=running.client_id, client_secret=running.client_secret)
        yield running


def _watch_policy_violations(page) -> list[str]:
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    return violations


def _sign_in_at_provider(page, live_server, login: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Sign in with Hospital ID").click()
    page.get_by_label("User name").fill(login)
    page.get_by_label("Password").fill(USERS[login]["password"])
    page.get_by_role("button", name="Sign in").click()


def test_a_nurse_signs_in_through_the_provider_and_out_of_both(live_server, provider, new_page, unit, screenshot):
    page = new_page()
    violations = _watch_policy_violations(page)

    _sign_in_at_provider(page, live_server, "nina")

    page.wait_for_url(f"{live_server.url}/")
    expect(page.locator(".topbar .who")).to_contain_text("Nina Nurse")
    nina = User.objects.get(external_identities__subject="nina", external_identities__issuer=provider.issuer)
    assert (nina.role, nina.unit, nina.username) == (Role.NURSE, unit, "nina")
    assert not nina.has_usable_password()
    assert set(AuditEvent.objects.filter(actor=nina).values_list("action", flat=True)) >= {
        "sso.account_created",
        "sso.login",
    }

    # Sign out: NeoPain, then the provider's own session (RP-initiated logout), back to NeoPain's sign-in.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(f"{live_server.url}/login/")
    screenshot(page, "sso-login")
    # The provider's session is over: signing in again asks for the password again.
    page.get_by_role("link", name="Sign in with Hospital ID").click()
    expect(page.get_by_label("Password")).to_be_visible()
    assert violations == []
    assert ExternalIdentity.objects.count() == 1


def test_a_person_without_a_neopain_role_is_refused_with_a_reason(live_server, provider, new_page, screenshot):
    page = new_page()

    _sign_in_at_provider(page, live_server, "pete")

    expect(page.get_by_role("heading", name="NeoPain cannot sign you in")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("does not give you a NeoPain role")
    expect(page.get_by_text("Hospital.AllStaff")).to_be_visible()
    screenshot(page, "sso-refused")
    assert not User.objects.filter(email="pete@hospital.example").exists()
    refusal = AuditEvent.objects.get(action="sso.refused")
    assert (refusal.actor_username, refusal.after["reason"]) == ("pete", "no_role")
    # Not signed in: the queue sends to the sign-in page.
    page.goto(f"{live_server.url}/")
    assert page.url.startswith(f"{live_server.url}/login/")
