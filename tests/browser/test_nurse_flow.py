"""End-to-end in a real browser: the nurse's shift and the unit admin's settings, by keyboard."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from annotations import services
from tests.browser.conftest import TABLET, sign_in, wait_until
from tests.factories import (
    FrameFactory,
    ModelVersionFactory,
    NeonateFactory,
    PredictionFactory,
)
from tests.ui.conftest import make_case
from triage.models import AuditEvent, TriageCase, UnitSettings

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

METRICS = {
    "accuracy_mean": 0.874,
    "accuracy_sd": 0.031,
    "auc": 0.93,
    "sensitivity": 0.88,
    "specificity": 0.86,
    "ece": 0.041,
    "temperature": 1.3,
    "thresholds": [
        {"threshold": t, "accuracy": a, "manual": round(m * 480), "n": 480}  # manual is a count, as threshold_table stores it
        for t, a, m in [
            (0.5, 0.84, 0.0),
            (0.55, 0.862, 0.12),
            (0.6, 0.88, 0.22),
            (0.65, 0.9, 0.31),
            (0.7, 0.92, 0.41),
            (0.75, 0.94, 0.52),
            (0.8, 0.955, 0.63),
            (0.85, 0.97, 0.74),
            (0.9, 0.98, 0.85),
            (0.95, 0.99, 0.93),
        ]
    ],
    "guarantee": {"alpha": 0.05, "threshold": 0.72, "n_calibration": 412, "delta": 0.1},
}


@pytest.fixture
def ward(unit, other_unit, nurse, second_nurse):
    """North: two uncertain cases, one confident automatic prediction; South: one case."""
    model = ModelVersionFactory(name="bootstrap-affectnet", version="0.1", unit=None, is_bootstrap=True)
    baby = NeonateFactory(mrn="MRN-204311", bed="4", unit=unit)
    twin = NeonateFactory(mrn="MRN-204312", bed="5", unit=unit)
    south_baby = NeonateFactory(mrn="MRN-SOUTH-77", bed="12", unit=other_unit)
    first = make_case(neonate=baby, model=model, p_pain=0.51, age_minutes=4)  # fresh (stale after 10 min)
    second = make_case(neonate=twin, model=model, p_pain=0.47, age_minutes=3)
    foreign = make_case(neonate=south_baby, model=model, p_pain=0.5, age_minutes=8)
    auto = PredictionFactory(frame=FrameFactory(neonate=baby), model_version=model, p_pain=0.97)
    # Some history, so the timeline and the workload table have something to show.
    now = timezone.now()
    for i, p_pain in enumerate([0.12, 0.2, 0.35, 0.3, 0.62, 0.81, 0.9, 0.44, 0.25, 0.18, 0.58, 0.33]):
        at = now - timedelta(hours=20 - i * 1.5)
        PredictionFactory(
            frame=FrameFactory(neonate=baby, captured_at=at), model_version=model, p_pain=p_pain, created_at=at
        )
    return {
        "model": model,
        "baby": baby,
        "twin": twin,
        "first": first,
        "second": second,
        "foreign": foreign,
        "auto": auto,
    }


def test_nurse_scores_a_case_by_keyboard_and_a_pain_alert_appears(
    live_server, new_page, screenshot, ward, nurse, password
):
    base = live_server.url
    page = new_page()
    sign_in(page, base, "alice", password)

    rows = page.locator("[data-case-row]")
    expect(rows).to_have_count(2)
    queue = page.locator("#queue")
    expect(queue).to_contain_text("MRN-204311")
    expect(queue).not_to_contain_text("MRN-SOUTH-77")
    assert page.locator(f'img[src="/predictions/{ward["auto"].pk}/crop"]').count() == 0
    expect(page.locator(".banner")).to_contain_text("Bootstrap model in use")
    # Pain first: p 0.51 before p 0.47.
    expect(rows.nth(0)).to_contain_text("MRN-204311")

    # A new case arrives without a reload within 5 s.
    late = make_case(neonate=ward["twin"], model=ward["model"], p_pain=0.49, age_minutes=0)
    expect(rows).to_have_count(3, timeout=5000)
    wait_until(
        page,
        "document.querySelectorAll('img.crop, .thumb img').length >= 3 && [...document.querySelectorAll('.thumb img')].every(i => i.complete)",
    )
    screenshot(page, "dashboard")

    # J focuses the first (most pain-like) case, Enter opens it, Enter on the focused Claim button claims it.
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/cases/{ward['first'].pk}/")
    expect(page.locator("#claim-button")).to_be_focused()
    wait_until(page, "[...document.querySelectorAll('img.crop')].every(i => i.complete)")
    screenshot(page, "case_view_unclaimed")
    page.keyboard.press("Enter")
    expect(page.locator(".claim-status")).to_contain_text("You hold this case")
    ward["first"].refresh_from_db()
    assert ward["first"].claimed_by == nurse

    # Digits set the focused item; Tab moves to the next one. The face comes first (what the image
    # shows), then how the baby was observed (Space picks "at the cot"), its time, the bedside items.
    expect(page.locator('input[name="face"][value="0"]')).to_be_focused()
    page.keyboard.press("1")
    page.keyboard.press("Tab")
    expect(page.locator('input[name="method"][value="cot"]')).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")  # the observation time, filled in with now
    page.keyboard.press("Tab")
    for digit in ["2", "1", "0", "0"]:
        page.keyboard.press(digit)
        page.keyboard.press("Tab")
    page.keyboard.press("5")  # out of range for arousal: refused with a hint
    expect(page.locator('.nips-item[data-item="arousal"] [data-hint]')).to_contain_text("0 to 1")
    page.keyboard.press("1")
    expect(page.locator("#nips-total")).to_have_text("Total 5 of 7: PAIN by the unit rule (total ≥ 3).")
    page.keyboard.press("ArrowLeft")  # arrows change the focused item...
    expect(page.locator("#nips-total")).to_contain_text("Total 4 of 7")
    page.keyboard.press("ArrowRight")  # ...and back
    expect(page.locator("#nips-total")).to_contain_text("Total 5 of 7")
    wait_until(page, "[...document.querySelectorAll('img.crop')].every(i => i.complete)")
    screenshot(page, "case_view")
    page.set_viewport_size(TABLET)
    screenshot(page, "case_view_tablet", full_page=True)
    page.set_viewport_size({"width": 1366, "height": 768})

    page.keyboard.press("Enter")
    # Straight on to the next case (issue 13: after a submit, the next case), the verdict above it.
    page.wait_for_url(f"{base}/cases/{late.pk}/")
    expect(page.locator(".messages")).to_contain_text("NIPS 5")
    expect(page.locator(".messages")).to_contain_text("pain team has been alerted")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Queue").click()
    page.wait_for_url(f"{base}/")
    expect(rows).to_have_count(2)
    assert page.locator(f'a[href="/cases/{ward["first"].pk}/"]').count() == 0
    ward["first"].refresh_from_db()
    assert ward["first"].status == TriageCase.Status.DECIDED and ward["first"].final_pain is True

    page.set_viewport_size(TABLET)
    screenshot(page, "dashboard_tablet", full_page=True)
    page.set_viewport_size({"width": 1366, "height": 768})

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    card = page.locator(".alert-card--open")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Bed 4")
    expect(card).to_contain_text("Severe pain")  # NIPS 5 (issue 13: the card says who scored what)
    expect(card).to_contain_text("5 of 7")
    expect(card.locator("dd").first).to_contain_text("Alice")
    screenshot(page, "alerts")
    card.get_by_label("Note (what was done)").fill("Sucrose given, reassess at 10:30")
    card.get_by_role("button", name="Acknowledge").click()
    expect(page.locator(".alert-card--done")).to_contain_text("Sucrose given")

    page.goto(f"{base}/neonates/{ward['baby'].pk}/timeline/")
    expect(page.locator("svg.timeline-svg .tl-nips--pain")).to_have_count(1)
    expect(page.locator("svg.timeline-svg .tl-alert")).to_have_count(1)
    screenshot(page, "timeline")
    assert late.pk


def test_a_second_nurse_cannot_claim_a_held_case(live_server, new_page, ward, nurse, password):
    services.case_claim(case=ward["second"], nurse=nurse)
    page = new_page()
    sign_in(page, live_server.url, "bella", password)
    expect(page.locator("#queue")).to_contain_text("Alice")  # holder shown in the queue
    page.goto(f"{live_server.url}/cases/{ward['second'].pk}/")
    expect(page.locator(".claim-status")).to_contain_text("Held by Alice")
    expect(page.locator("#claim-button")).to_have_count(0)
    expect(page.locator('input[name="face"]').first).to_be_disabled()
    expect(page.get_by_role("button", name="Submit assessment")).to_be_disabled()
    # Even a hand-made POST is refused (the server decides, not the page).
    status = page.evaluate(
        """async (url) => {
            const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token, 'Accept': 'application/json'}});
            return r.status;
        }""",
        f"/api/v1/cases/{ward['second'].pk}/claim/",
    )
    assert status == 409


def test_unit_admin_changes_the_threshold_sees_the_audit_row_and_downloads_the_csv(
    live_server, new_page, screenshot, ward, nurse, unit_admin, password
):
    model = ward["model"]
    model.is_bootstrap = False
    model.name, model.version, model.metrics = "painnet-nicu", "3.2", METRICS
    model.save()
    services.assessment_create(
        case=ward["second"],
        nurse=nurse,
        items={"face": 1, "cry": 1, "breathing": 0, "arms": 1, "legs": 0, "arousal": 1},
        note='=cmd, "quoted"',
    )
    base = live_server.url
    page = new_page()
    sign_in(page, base, "adam", password)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page.locator(".workload-table")).to_be_visible()
    expect(page.locator(".guarantee")).to_contain_text("412")
    threshold = page.get_by_label("Automatic-verdict threshold")
    threshold.fill("0.7")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator(".messages")).to_contain_text("Settings saved")
    assert UnitSettings.objects.get(unit=unit_admin.unit).threshold == 0.7
    screenshot(page, "admin_settings", full_page=True)
    page.set_viewport_size({"width": 1366, "height": 768})
    screenshot(page, "admin_settings_fold")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").select_option("unit_settings.updated")
    page.get_by_role("button", name="Filter").click()
    row = page.locator(".audit-table tbody tr").first
    expect(row).to_contain_text("adam")
    expect(row).to_contain_text('{"threshold": 0.55}')
    expect(row).to_contain_text('{"threshold": 0.7}')
    expect(row).to_contain_text("UTC")
    screenshot(page, "audit_log")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Export").click()
    page.get_by_label("For Excel").uncheck()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith("nips-assessments-north-")
    from pathlib import Path

    body = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 1 and rows[0]["neonate_mrn"] == "MRN-204312" and rows[0]["nips_total"] == "4"
    assert rows[0]["note"] == '\'=cmd, "quoted"'
    assert AuditEvent.objects.filter(action="assessments.exported", actor=unit_admin).exists()


def test_nurse_is_refused_the_settings_page(live_server, new_page, ward, password):
    page = new_page()
    sign_in(page, live_server.url, "alice", password)
    expect(page.get_by_role("link", name="Settings")).to_have_count(0)
    response = page.goto(f"{live_server.url}/unit/settings/")
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("Not allowed")


def test_a_long_queue_shows_the_total_and_the_next_page_by_keyboard(
    live_server, new_page, screenshot, unit, nurse, password
):
    """More cases than a page: the total waiting is on screen and the rest are one link away."""
    from annotations.views import QUEUE_LIMIT

    model = ModelVersionFactory(name="painnet", version="2.1", unit=None)
    babies = [NeonateFactory(mrn=f"MRN-30{i:02d}", bed=str(i + 1), unit=unit) for i in range(6)]
    for i in range(QUEUE_LIMIT + 12):
        make_case(neonate=babies[i % 6], model=model, p_pain=0.5 + (i % 9) / 100, age_minutes=i, crop=i < 8)
    base = live_server.url
    page = new_page()
    sign_in(page, base, "alice", password)

    queue = page.locator("#queue")
    expect(page.locator("[data-case-row]")).to_have_count(QUEUE_LIMIT)
    expect(queue.locator(".queue__count")).to_contain_text(f"{QUEUE_LIMIT + 12} cases waiting")
    expect(queue.locator(".queue__count")).to_contain_text("12 more waiting")
    wait_until(  # lazy images: those on screen
        page,
        "[...document.querySelectorAll('.thumb img')].filter(i => i.getBoundingClientRect().top < innerHeight)"
        ".every(i => i.complete)",
    )
    screenshot(page, "dashboard_long_queue")

    # A case arriving beyond the first page changes the total without a reload.
    make_case(neonate=babies[0], model=model, p_pain=0.4, crop=False)
    expect(queue.locator(".queue__count")).to_contain_text("13 more waiting", timeout=5000)

    # The next page is a link like any other: Tab to it, Enter opens the least urgent cases.
    next_link = page.locator("#queue .queue-pager--top [rel=next]")
    expect(next_link).to_have_text("Next 13 of 13 waiting ›")
    next_link.focus()
    make_case(neonate=babies[1], model=model, p_pain=0.4, crop=False)  # the live refresh keeps the focus
    expect(next_link).to_have_text("Next 14 of 14 waiting ›", timeout=5000)
    expect(next_link).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/?page=2")
    expect(page.locator("[data-case-row]")).to_have_count(14)
    expect(page.locator("#queue .queue__count")).to_contain_text(f"Showing cases {QUEUE_LIMIT + 1}–{QUEUE_LIMIT + 14}")
    page.keyboard.press("j")
    expect(page.locator("#queue a.case-link").first).to_be_focused()
    screenshot(page, "dashboard_page_2", full_page=True)
    page.set_viewport_size(TABLET)
    screenshot(page, "dashboard_page_2_tablet")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.locator("#queue .queue-pager--top [rel=prev]").click()
    page.wait_for_url(f"{base}/?page=1")
    expect(page.locator("[data-case-row]")).to_have_count(QUEUE_LIMIT)
