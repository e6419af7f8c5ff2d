"""In a real browser: an expiring claim never loses the nurse's work, leaving the case gives it back,
and on a 390-px phone the bed, MRN and face stay pinned while she scores (issue 13, items 4 and 9)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from annotations import services
from tests.browser.conftest import sign_in, wait_until
from tests.factories import NeonateFactory
from tests.ui.conftest import make_case
from triage.models import TriageCase, UnitSettings

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}


def shoot(page, name: str, full_page: bool = False) -> None:
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture
def cases(unit, model):
    baby = NeonateFactory(mrn="MRN-204311", bed="4", unit=unit)
    twin = NeonateFactory(mrn="MRN-204312", bed="5", unit=unit)
    return [
        make_case(neonate=baby, model=model, p_pain=0.53, age_minutes=4),
        make_case(neonate=twin, model=model, p_pain=0.51, age_minutes=2),
        make_case(neonate=baby, model=model, p_pain=0.49, age_minutes=1),
    ]


def score_some(page) -> None:
    page.locator('input[name="method"][value="cot"]').check()  # observed at the cot (13a's form)
    page.locator('input[name="face"][value="1"]').check()
    page.locator('input[name="cry"][value="2"]').check()
    page.locator('input[name="breathing"][value="1"]').check()
    page.get_by_label("Note (optional)").fill("grimace at heel lance")


def test_a_lost_claim_keeps_her_scores_and_note(live_server, new_page, unit, cases, nurse, second_nurse, password):
    """Countdown, heartbeat extension, then another nurse takes the lapsed case: nothing she typed is lost."""
    UnitSettings.objects.update_or_create(unit=unit, defaults={"claim_timeout_minutes": 1})
    case = cases[0]
    base = live_server.url
    page = new_page()
    sign_in(page, base, "alice", password)
    page.goto(f"{base}/cases/{case.pk}/")
    page.get_by_role("button", name="Claim this case").click()
    clock = page.locator("#claim-clock")
    expect(clock).to_have_text(re.compile(r"^(1:00|0:5\d)$"))

    # Scoring with under a minute left: the heartbeat pushes the claim out again.
    score_some(page)
    before = TriageCase.objects.get(pk=case.pk).claim_expires_at
    page.wait_for_timeout(2100)  # the heartbeat's minimum gap after the page loaded
    page.locator('input[name="arms"][value="0"]').check()
    expect(clock).to_have_text(re.compile(r"^(1:00|0:5\d)$"))
    deadline = timezone.now() + timedelta(seconds=5)
    while TriageCase.objects.get(pk=case.pk).claim_expires_at <= before and timezone.now() < deadline:
        page.wait_for_timeout(100)
    assert TriageCase.objects.get(pk=case.pk).claim_expires_at > before
    page.locator(".claim-status").evaluate("el => el.scrollIntoView()")
    shoot(page, "claim_countdown")

    # Her claim lapses, Bella takes the case: the next heartbeat says so, her entries stay.
    TriageCase.objects.filter(pk=case.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    services.case_claim(case=TriageCase.objects.get(pk=case.pk), nurse=second_nurse)
    page.wait_for_timeout(2100)
    page.locator('input[name="legs"][value="0"]').check()
    problem = page.locator("#claim-problem")
    expect(problem).to_contain_text("Claim lost: Bella holds this case", timeout=6000)
    expect(problem).to_contain_text("entries are kept")
    expect(page.locator(".claim-status .state--mine")).to_be_hidden()
    expect(page.locator("#claim-clock")).to_have_text("lost")
    expect(page.locator('input[name="cry"][value="2"]')).to_be_checked()
    page.locator(".claim-status").evaluate("el => el.scrollIntoView()")
    shoot(page, "claim_lost_entries_kept")

    # Submitting anyway: refused, and the page comes back with everything she entered.
    page.locator('input[name="arousal"][value="1"]').check()
    page.get_by_role("button", name="Submit assessment").click()
    expect(page.locator("#claim-problem")).to_contain_text("Not saved:")
    expect(page.locator(".claim-status")).to_contain_text("Held by Bella")
    expect(page.locator('input[name="face"][value="1"]')).to_be_checked()
    expect(page.locator('textarea[name="note"]')).to_have_value("grimace at heel lance")

    # Even a fresh load of the case (the server knows nothing of her entries) shows them again.
    page.goto(f"{base}/cases/{case.pk}/")
    expect(page.locator("#draft-restored")).to_be_visible()
    expect(page.locator('input[name="cry"][value="2"]')).to_be_checked()
    expect(page.locator('textarea[name="note"]')).to_have_value("grimace at heel lance")
    assert not case.assessments.exists()


def test_leaving_the_case_releases_the_claim_a_reload_keeps_it_and_a_half_filled_form_warns(
    live_server, new_page, cases, nurse, password
):
    case = cases[0]
    base = live_server.url
    page = new_page()
    sign_in(page, base, "alice", password)
    page.goto(f"{base}/cases/{case.pk}/")
    page.get_by_role("button", name="Claim this case").click()
    expect(page.locator("#claim-clock")).to_be_visible()

    # A reload is not leaving: the claim is taken again at once.
    page.reload()
    expect(page.locator("#claim-clock")).to_be_visible()
    page.wait_for_timeout(1000)  # the release beacon and the renewing heartbeat have both landed
    assert TriageCase.objects.get(pk=case.pk).claim_is_live()
    assert TriageCase.objects.get(pk=case.pk).claimed_by == nurse

    # A half-filled form: mouse navigation away asks first; staying keeps everything.
    page.locator('input[name="face"][value="1"]').check()
    dialogs = []

    def dismiss(dialog):
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Queue").click()
    wait_until(page, "true")
    page.wait_for_timeout(300)
    assert dialogs == ["beforeunload"]
    assert page.url == f"{base}/cases/{case.pk}/"
    expect(page.locator('input[name="face"][value="1"]')).to_be_checked()

    # Leaving with an empty form: no question, and the case is back in the queue for others.
    page.remove_listener("dialog", dismiss)
    page.locator('input[name="face"][value="1"]').evaluate("el => { el.checked = false; }")
    page.locator("#nips-form").evaluate("f => f.dispatchEvent(new Event('change', {bubbles: true}))")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Queue").click()
    page.wait_for_url(f"{base}/")
    deadline = timezone.now() + timedelta(seconds=5)
    while TriageCase.objects.get(pk=case.pk).claimed_by_id and timezone.now() < deadline:
        page.wait_for_timeout(100)
    released = TriageCase.objects.get(pk=case.pk)
    assert released.claimed_by_id is None and released.status == TriageCase.Status.OPEN


def test_j_skips_a_case_another_nurse_holds_and_a_submit_goes_to_the_next_case(
    live_server, new_page, cases, nurse, second_nurse, password
):
    first, held, last = cases
    services.case_claim(case=held, nurse=second_nurse)
    base = live_server.url
    page = new_page()
    sign_in(page, base, "alice", password)
    page.keyboard.press("j")
    expect(page.locator(f'#queue a.case-link[href="/cases/{first.pk}/"]')).to_be_focused()
    page.keyboard.press("j")  # Bella's case is skipped
    expect(page.locator(f'#queue a.case-link[href="/cases/{last.pk}/"]')).to_be_focused()

    page.goto(f"{base}/cases/{first.pk}/")
    page.keyboard.press("Enter")  # claim
    expect(page.locator("#claim-clock")).to_be_visible()
    page.keyboard.press("1")  # face
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # observed at the cot
    page.keyboard.press("Tab")  # the observation time, filled in with now
    page.keyboard.press("Tab")
    for digit in ["2", "1", "0", "0", "1"]:
        page.keyboard.press(digit)
        page.keyboard.press("Tab")
    page.get_by_role("button", name="Submit assessment").click()
    page.wait_for_url(f"{base}/cases/{last.pk}/")
    expect(page.locator(".messages")).to_contain_text(f"Case {first.pk} saved: NIPS 5")


def test_on_a_phone_bed_mrn_and_face_stay_pinned_while_scoring(live_server, new_page, cases, nurse, password):
    case = cases[0]
    base = live_server.url
    page = new_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    sign_in(page, base, "alice", password)
    page.goto(f"{base}/cases/{case.pk}/")
    page.get_by_role("button", name="Claim this case").tap()
    expect(page.locator("#claim-clock")).to_be_visible()
    score_some(page)
    page.get_by_role("button", name="Submit assessment").scroll_into_view_if_needed()
    wait_until(page, "[...document.querySelectorAll('img')].filter(i => i.src).every(i => i.complete)")

    pin = page.locator(".case-pin")
    expect(pin).to_be_visible()
    expect(pin).to_contain_text("Bed 4")
    expect(pin).to_contain_text("MRN-204311")
    box = pin.bounding_box()
    assert box["y"] <= 1 and box["width"] <= PHONE["width"], box  # pinned to the top of the screen
    assert page.locator(".case-pin__face").evaluate("img => img.complete && img.naturalWidth > 0")
    # Touch screen: no keyboard hints; and nothing wider than the screen.
    expect(page.locator(".kbd-hint").first).to_be_hidden()
    expect(page.locator(".case-nav kbd").first).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shoot(page, "case_phone_scoring")
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "case_phone_top")
