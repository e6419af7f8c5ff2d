"""In a real browser: the time-first queue, stale frames grouped per baby, the case's frame age and
routing reason, and the timeline with NIPS on its own axis (issue 13: blocker 2, items 3 and 10)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.factories import AlertFactory, FrameFactory, NeonateFactory, NipsAssessmentFactory, PredictionFactory
from tests.ui.conftest import make_case

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def shoot(page, name: str, full_page: bool = False) -> None:
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture
def ward(unit, model):
    """Bed 3: three fresh frames; bed 5: one fresh frame; bed 7: two stale frames (one very pain-like)."""
    bed3 = NeonateFactory(mrn="MRN-300103", bed="3", unit=unit)
    bed5 = NeonateFactory(mrn="MRN-500105", bed="5", unit=unit)
    bed7 = NeonateFactory(mrn="MRN-700107", bed="7", unit=unit)
    return {
        "fresh": [
            make_case(neonate=bed3, model=model, p_pain=0.53, age_minutes=4.5),
            make_case(neonate=bed3, model=model, p_pain=0.50, age_minutes=2.5),
            make_case(neonate=bed3, model=model, p_pain=0.48, age_minutes=0.5),
            make_case(neonate=bed5, model=model, p_pain=0.47, age_minutes=6.5),
        ],
        "stale": [
            make_case(neonate=bed7, model=model, p_pain=0.54, age_minutes=125),
            make_case(neonate=bed7, model=model, p_pain=0.46, age_minutes=95),
        ],
        "babies": (bed3, bed5, bed7),
    }


def test_the_queue_puts_fresh_frames_first_grouped_per_baby(live_server, new_page, ward, nurse, unit, password):
    bed9 = NeonateFactory(mrn="MRN-900109", bed="9", unit=unit)
    for minutes in (3, 2, 1):  # the camera of bed 9 sees no face: no case, but the nurse is told
        FrameFactory(neonate=bed9, status="no_face", captured_at=timezone.now() - timedelta(minutes=minutes))
    page = new_page()
    sign_in(page, live_server.url, "alice", password)
    links = page.locator("a.case-link")
    expected = [f"/cases/{c.pk}/" for c in ward["fresh"] + ward["stale"]]
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == expected
    groups = page.locator("[data-queue-group]")
    expect(groups.nth(0)).to_contain_text("Bed 3")
    expect(groups.nth(0)).to_contain_text("3 frames in the last 5 minutes")
    expect(groups.nth(1)).to_contain_text("1 frame in the last 7 minutes")
    expect(groups.nth(2)).to_contain_text("2 older frames, captured 2 h 05 min to 1 h 35 min ago")
    expect(page.locator(".queue-tier--stale")).to_contain_text("more than 10 minutes ago")
    expect(page.locator("[data-queue-time]")).to_contain_text("4 fresh")
    # Every row: the frame's age, the absolute time on hover, a Stale tag on the old ones.
    first_age = page.locator("tr.case-row time").first
    expect(first_age).to_have_text("4 min ago")
    assert re.match(r"\w{3} \d{1,2} \w{3} \d{4}, \d\d:\d\d:\d\d", first_age.get_attribute("title"))
    expect(page.locator("tr.case-row--stale")).to_have_count(2)
    expect(page.locator("tr.case-row--stale .tag--stale").first).to_have_text("Stale")
    expect(page.locator('[data-no-face-bed="9"]')).to_contain_text("camera sees no face")
    shoot(page, "queue_time_first", full_page=True)


def test_a_stale_case_warns_and_words_its_routing(live_server, new_page, ward, nurse, password):
    stale = ward["stale"][0]
    page = new_page()
    sign_in(page, live_server.url, "alice", password)
    page.goto(f"{live_server.url}/cases/{stale.pk}/")
    expect(page.locator("[data-stale-warning]")).to_contain_text("captured 2 h 05 min ago, more than 10 minutes ago")
    expect(page.locator(".frame-age")).to_contain_text("frame captured 2 h 05 min ago")
    expect(page.locator("[data-routing-reason]")).to_contain_text("confidence 0.54 is below the threshold 0.55")
    expect(page.locator("[data-saliency-absent]")).to_contain_text("Not made")
    # The meter's nurse band spans p(pain) 0.45 to 0.55, as the routing does.
    band = page.locator(".meter__band").bounding_box()
    track = page.locator(".meter__track").bounding_box()
    assert abs((band["x"] - track["x"]) / track["width"] - 0.45) < 0.01
    assert abs(band["width"] / track["width"] - 0.10) < 0.01
    # J/K follow the dashboard's order: K goes back to the last fresh frame (bed 5).
    assert page.locator("#case-page").get_attribute("data-prev-url") == f"/cases/{ward['fresh'][3].pk}/"
    shoot(page, "case_stale_frame_reason", full_page=True)


def test_the_timeline_plots_nips_on_its_own_axis_at_the_frames_time(
    live_server, new_page, ward, nurse, password, model
):
    bed3 = ward["babies"][0]
    now = timezone.now()
    for i, p in enumerate([0.2, 0.3, 0.62, 0.81, 0.9, 0.44, 0.25, 0.58]):
        at = now - timedelta(minutes=330 - i * 40)
        PredictionFactory(
            frame=FrameFactory(neonate=bed3, captured_at=at), model_version=model, p_pain=p, created_at=at
        )
    for minutes, total, pain in ((200, 5, True), (199, 5, True), (120, 2, False), (40, 4, True)):
        case = make_case(neonate=bed3, model=model, p_pain=0.52, age_minutes=minutes)
        NipsAssessmentFactory(case=case, nurse=nurse, total=total, pain=pain)
    AlertFactory(
        neonate=bed3,
        created_at=now - timedelta(minutes=198),
        last_event_at=now - timedelta(minutes=185),
        acknowledged_at=now - timedelta(minutes=190),
        acknowledged_by=nurse,
        ack_note="Sucrose 24% and swaddling",
    )
    AlertFactory(neonate=bed3, created_at=now - timedelta(minutes=39))
    page = new_page()
    sign_in(page, live_server.url, "alice", password)
    page.goto(f"{live_server.url}/neonates/{bed3.pk}/timeline/?hours=6")
    svg = page.locator("svg.timeline-svg")
    expect(svg.locator("text", has_text="NIPS total")).to_have_count(1)
    marks = svg.locator("g.tl-nips")
    expect(marks).to_have_count(3)  # the two 5s a minute apart are one mark with a ring
    expect(svg.locator("g.tl-nips--many")).to_have_count(1)
    expect(svg.locator("g.tl-intervention")).to_have_count(1)
    # No two NIPS or alert markers overlap on screen.
    for selector in ("g.tl-nips", "g.tl-alert", "g.tl-intervention"):
        boxes = [svg.locator(selector).nth(i).bounding_box() for i in range(svg.locator(selector).count())]
        for a in boxes:
            for b in boxes:
                if a is not b:
                    assert (
                        a["x"] + a["width"] <= b["x"]
                        or b["x"] + b["width"] <= a["x"]
                        or (a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])
                    ), selector
    expect(page.get_by_role("cell", name=re.compile("Sucrose 24% and swaddling"))).to_be_visible()
    shoot(page, "timeline_nips_axis", full_page=True)
