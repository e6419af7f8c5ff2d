"""In a real browser: alerts reach people. The open-alert badge on every page updates by itself, the
nurse's opt-in sound and notification fire for a new alert, and an unacknowledged alert escalates to
the charge nurse on whatever page she is (issue 13, item 5)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in, wait_until
from tests.factories import NeonateFactory, UserFactory
from tests.ui.test_alert_reach import auto_alert, nurse_alert
from triage import selectors, services
from triage.models import Role, UnitSettings

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# Headless Chromium has no notification centre and no speakers: record what the page asks of them.
RECORD_NOTIFICATIONS_AND_SOUND = """
window.__notes = [];
window.__tones = 0;
class RecordedNotification {
  constructor(title, options) { window.__notes.push({title: title, body: (options || {}).body}); }
  close() {}
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
}
window.Notification = RecordedNotification;
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) { window.__tones += 1; return start.apply(this, args); };
"""


def shoot(page, name: str, full_page: bool = False) -> None:
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture
def fast_poll(monkeypatch):
    monkeypatch.setattr(selectors, "ALERT_POLL_SECONDS", 1)


def test_a_new_alert_shows_on_the_badge_and_sounds_and_notifies_when_turned_on(
    live_server, new_page, fast_poll, unit, model, nurse, second_nurse, password
):
    baby = NeonateFactory(mrn="MRN-204311", bed="4", unit=unit)
    page = new_page()
    page.add_init_script(RECORD_NOTIFICATIONS_AND_SOUND)
    base = live_server.url
    sign_in(page, base, "alice", password)
    badge = page.locator("#alert-badge")
    expect(badge).to_be_hidden()

    # The opt-in, remembered on this computer.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    page.get_by_label("play a sound").check()
    page.get_by_label("show a browser notification").check()
    expect(page.locator("#alert-prefs-state")).to_have_text("Notifications on for this computer.")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Babies").click()
    page.wait_for_url(f"{base}/neonates/")

    alert = nurse_alert(neonate=baby, model=model, total=6, minutes_ago=0, nurse=second_nurse)
    expect(badge).to_be_visible(timeout=5000)
    expect(badge).to_have_text(": 1 open")
    wait_until(page, "window.__notes.length === 1")
    note = page.evaluate("window.__notes[0]")
    assert note["title"] == "Pain alert: bed 4" and "NIPS 6" in note["body"]
    assert "MRN" not in note["title"] + note["body"]
    assert page.evaluate("window.__tones") >= 2  # one chime: two tones
    # The same alert is announced once, however many pages she opens.
    page.reload()
    page.wait_for_timeout(1500)
    assert page.evaluate("window.__notes.length") == 0
    page.locator(".topbar").screenshot(path=str(DOCS_SCREENSHOTS / "alert_badge.png"))

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    card = page.locator(f'[data-alert="{alert.pk}"]')
    expect(card).to_contain_text("Severe pain")
    expect(card.locator("dd").first).to_contain_text("Bella")
    expect(card).to_contain_text("face 1, cry 2, breathing 1, arms 1, legs 1, arousal 0")
    expect(card).to_contain_text("just now")
    expect(card).not_to_contain_text("just now ago")
    shoot(page, "alerts_cards")
    card.get_by_role("link", name="Open the case").click()
    page.wait_for_url(f"{base}/cases/{alert.assessment.case_id}/")


def test_an_unacknowledged_alert_escalates_to_the_charge_nurse_on_any_page(
    live_server, new_page, fast_poll, unit, model, nurse, password
):
    UnitSettings.objects.update_or_create(unit=unit, defaults={"alert_escalation_minutes": 5})
    UserFactory(username="cora", first_name="Cora", role=Role.NURSE, unit=unit, is_charge_nurse=True)
    baby = NeonateFactory(mrn="MRN-204311", bed="4", unit=unit)
    twin = NeonateFactory(mrn="MRN-204312", bed="5", unit=unit)
    auto_alert(neonate=twin, model=model, minutes_ago=1)
    base = live_server.url
    charge = new_page()
    charge.add_init_script(RECORD_NOTIFICATIONS_AND_SOUND)
    charge.add_init_script("localStorage.setItem('neopain:alert-prefs', JSON.stringify({sound: true, notify: true}))")
    sign_in(charge, base, "cora", password)
    bedside = new_page()
    sign_in(bedside, base, "alice", password)
    expect(charge.locator("#escalation-banner")).to_have_count(0)

    overdue = nurse_alert(neonate=baby, model=model, total=4, minutes_ago=4.9)
    expect(charge.locator("#alert-badge")).to_have_text(": 2 open", timeout=5000)
    assert services.alerts_escalate() == 0  # not yet five minutes
    assert services.alerts_escalate(now=timezone.now() + timedelta(seconds=10)) == 1

    banner = charge.locator("#escalation-banner")
    expect(banner).to_contain_text("Escalated to you: 1 pain alert nobody acknowledged in time", timeout=5000)
    expect(charge.locator("#alert-badge")).to_have_text(": 2 open, 1 escalated")
    wait_until(charge, "window.__notes.some(n => n.title.startsWith('Escalated'))")
    titles = charge.evaluate("window.__notes.map(n => n.title)")
    assert "Escalated: pain alert for bed 4 not acknowledged" in titles
    shoot(charge, "alert_escalated_charge_nurse")
    # The bedside nurse sees the count, not the charge nurse's banner.
    expect(bedside.locator("#alert-badge")).to_have_text(": 2 open, 1 escalated", timeout=5000)
    expect(bedside.locator("#escalation-banner")).to_have_count(0)

    bedside.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    card = bedside.locator(f'[data-alert="{overdue.pk}"]')
    expect(card).to_contain_text("to the charge nurse at")
    card.get_by_label("Note (what was done)").fill("Sucrose given")
    card.get_by_role("button", name="Acknowledge").click()
    expect(charge.locator("#escalation-banner")).to_be_hidden(timeout=5000)
    expect(charge.locator("#alert-badge")).to_have_text(": 1 open")
