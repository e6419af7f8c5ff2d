"""The Content-Security-Policy in a real browser: nothing it blocks is needed (issue 16, item 37).

Chromium reports every script, style or connection the policy refuses as a console error and a
``securitypolicyviolation`` event; the pages and the self-hosted Swagger UI must work without one.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _watch_violations(page) -> list[str]:
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    return violations


def test_pages_and_the_api_docs_run_under_the_policy(live_server, new_page, unit_admin, password):
    page = new_page()
    violations = _watch_violations(page)
    sign_in(page, live_server.url, unit_admin.username, password)

    for path in ("/", "/alerts/", "/neonates/", "/unit/settings/", "/password/"):
        response = page.goto(f"{live_server.url}{path}")
        assert "script-src 'self'" in response.headers["content-security-policy"], path

    page.goto(f"{live_server.url}/api/docs/")
    # Swagger UI drew the operations from the schema: its bundle and start-up script ran.
    expect(page.locator(".opblock").first).to_be_visible(timeout=15000)
    expect(page.get_by_text("/api/v1/frames/").first).to_be_visible()

    assert violations == []


def test_the_policy_really_blocks_an_injected_inline_script(live_server, new_page, nurse, password):
    """The check above can fail: an inline script added to a page is refused and reported."""
    page = new_page()
    violations = _watch_violations(page)
    sign_in(page, live_server.url, nurse.username, password)

    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        " document.body.appendChild(s); }"
    )

    assert page.evaluate("() => window.injected === undefined")
    page.wait_for_timeout(200)
    assert any("script-src" in v for v in violations), violations
