"""In a real browser: the unit admin makes, copies, rotates and revokes a camera's API token (issue 18,
item 3); the key shows once and works against the API. Screenshot: docs/screenshots/camera_tokens.png."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.browser.test_accessibility import _context_for
from tests.browser.test_admin_pages import shoot
from triage import services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def api_status(base: str, key: str) -> int:
    request = urllib.request.Request(f"{base}/api/v1/frames/", headers={"Authorization": f"Token {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_a_unit_admin_issues_rotates_and_revokes_a_camera_token(chromium, live_server, unit_admin, device):
    old = services.api_token_create(user=device.user)
    context = _context_for(chromium, live_server.url, unit_admin)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/unit/devices/")
        expect(page.locator(".tokens-table")).to_contain_text(old.token.prefix)

        page.get_by_role("button", name="New token").click()
        shown = page.locator("[data-token-key]").inner_text()
        assert api_status(live_server.url, shown) == 200
        shoot(page, "camera_tokens", full_page=True)

        page.get_by_role("button", name="Rotate").click()
        rotated = page.locator("[data-token-key]").inner_text()
        assert api_status(live_server.url, shown) == 401 and api_status(live_server.url, old.key) == 401
        assert api_status(live_server.url, rotated) == 200

        page.goto(f"{live_server.url}/unit/devices/")
        expect(page.locator("[data-token-key]")).to_have_count(0)  # shown once
        page.get_by_role("button", name="Revoke").click()
        expect(page.locator(".message--success")).to_contain_text("It no longer works")
        assert api_status(live_server.url, rotated) == 401
    finally:
        context.close()
