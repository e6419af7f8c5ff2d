"""Issue 13 in a real browser: a face-only review from the image, and going to the cot.

Screenshots for reviewers go to docs/screenshots/ (and artifacts/screenshots/ with the others).
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in, wait_until
from tests.factories import FrameFactory, ModelVersionFactory, NeonateFactory, PredictionFactory
from tests.ui.conftest import face_png, make_case
from triage.models import TriageCase

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ALL_SCORES = {"face": 1, "cry": 2, "breathing": 1, "arms": 0, "legs": 0, "arousal": 1}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def doc_shot(screenshot):
    """Save a screenshot where the issue asks for it (docs/screenshots/<name>.png)."""
    DOCS.mkdir(parents=True, exist_ok=True)

    def shoot(page, name: str, full_page: bool = False) -> Path:
        path = screenshot(page, name, full_page=full_page)
        shutil.copyfile(path, DOCS / path.name)
        return DOCS / path.name

    return shoot


@pytest.fixture
def cot(unit, nurse):
    model = ModelVersionFactory(name="painnet-nicu", version="1.0", unit=None)
    baby = NeonateFactory(mrn="MRN-310022", bed="7", unit=unit)
    case = make_case(neonate=baby, model=model, p_pain=0.52, age_minutes=4)
    # Keyframes the camera sent around the case's frame: shown as a short sequence.
    from django.core.files.base import ContentFile

    frame = case.prediction.frame
    for seconds in (-20, -10, 10):
        at = frame.captured_at + timedelta(seconds=seconds)
        other = PredictionFactory(frame=FrameFactory(neonate=baby, captured_at=at), model_version=model, created_at=at)
        other.crop.save("crop.png", ContentFile(face_png()), save=True)
    return {"model": model, "baby": baby, "case": case}


def test_a_face_only_review_from_the_image_is_kept_apart_from_nips(
    live_server, new_page, doc_shot, cot, nurse, password
):
    base = live_server.url
    case = cot["case"]
    page = new_page()
    sign_in(page, base, "alice", password)
    page.goto(f"{base}/cases/{case.pk}/")
    page.locator("#claim-button").click()
    expect(page.locator(".claim-status")).to_contain_text("You hold this case")

    page.locator(".frames-around summary").click()
    expect(page.locator(".frames-around li")).to_have_count(4)
    expect(page.locator(".frames-around li.is-current")).to_contain_text("this case")
    wait_until(
        page,
        "[...document.querySelectorAll('.frames-around img, img.crop')].every(i => i.complete && i.naturalWidth > 0)",
    )

    # From the image only: the bedside items are not asked, there is no total, her call decides.
    page.locator('input[name="face"][value="1"]').check()
    page.locator('input[name="method"][value="image"]').check()
    expect(page.locator('input[name="arms"]').first).to_be_disabled()
    expect(page.locator("#nips-total")).to_have_text("Face only. No NIPS total: give your own call below.")
    page.locator("#nips-submit").click()
    expect(page.locator("#nips-problem")).to_contain_text("give your own pain / no pain call")
    page.locator('input[name="nurse_call"][value="no_pain"]').check()
    expect(page.locator("#nips-total")).to_have_text("Face only. No NIPS total — your call: no pain.")
    doc_shot(page, "face_only_review", full_page=True)
    page.locator("#nips-submit").click()
    page.wait_for_url(f"{base}/")
    expect(page.locator(".messages")).to_contain_text(
        "face only, no NIPS total — no pain (nurse's call, from the image only)"
    )

    case.refresh_from_db()
    assessment = case.assessments.get()
    assert case.status == TriageCase.Status.DECIDED and case.final_pain is False
    assert (assessment.kind, assessment.total, assessment.method, assessment.cry) == ("face_only", None, "image", None)
    assert assessment.observed_at == case.prediction.frame.captured_at  # what she saw is the frame, taken then

    page.goto(f"{base}/cases/{case.pk}/")
    expect(page.locator(".assessment-list")).to_contain_text("face only no NIPS total")
    expect(page.locator(".assessment-list")).to_contain_text("Observed from the image only")
    doc_shot(page, "face_only_on_the_case")
    page.goto(f"{base}/neonates/{cot['baby'].pk}/timeline/")
    expect(page.locator("table")).to_contain_text("face only")


def test_going_to_the_cot_times_the_minute_and_one_observation_resolves_the_babys_cases(
    live_server, new_page, doc_shot, cot, nurse, password
):
    base = live_server.url
    case = cot["case"]
    earlier = make_case(neonate=cot["baby"], model=cot["model"], p_pain=0.5, age_minutes=7)
    page = new_page()
    sign_in(page, base, "alice", password)
    page.goto(f"{base}/cases/{case.pk}/")
    page.get_by_role("button", name="Go to the cot").click()
    expect(page.locator("#bedside")).to_contain_text("Observing at the cot")
    expect(page.locator("[data-bedside-timer]")).to_contain_text("left of the one-minute observation")
    expect(page.locator("#bedside")).to_contain_text(f"case {earlier.pk}")
    expect(page.locator('input[name="method"][value="cot"]')).to_be_checked()
    # The minute is counted down in the page (the server stores when it started).
    first = page.locator("[data-bedside-timer]").inner_text()
    page.wait_for_timeout(1100)
    assert page.locator("[data-bedside-timer]").inner_text() != first
    page.locator("#bedside").scroll_into_view_if_needed()
    doc_shot(page, "bedside_timer")

    for name, value in ALL_SCORES.items():
        page.locator(f'input[name="{name}"][value="{value}"]').check()
    expect(page.locator("#nips-total")).to_have_text("Total 5 of 7: PAIN by the unit rule (total ≥ 3).")
    wait_until(page, "[...document.querySelectorAll('img.crop')].every(i => i.complete)")
    doc_shot(page, "bedside_observation", full_page=True)
    page.locator("#nips-submit").click()
    page.wait_for_url(f"{base}/")
    expect(page.locator(".messages")).to_contain_text(f"resolved this baby's case {earlier.pk}")
    earlier.refresh_from_db()
    assert earlier.status == TriageCase.Status.DECIDED and earlier.final_pain is True
    copy = earlier.assessments.get()
    assert copy.bedside_source.case_id == case.pk and copy.method == "cot"
    page.goto(f"{base}/cases/{earlier.pk}/")
    expect(page.locator(".assessment-list")).to_contain_text(f"from the bedside observation of case {case.pk}")
    doc_shot(page, "bedside_resolved_case")


def test_the_charge_nurse_sees_a_double_scoring_disagreement_and_marks_it_reviewed(
    live_server, new_page, doc_shot, cot, nurse, second_nurse, unit_admin, password
):
    from annotations import services

    case = make_case(neonate=cot["baby"], model=cot["model"], p_pain=0.5, age_minutes=3, assessments_required=2)
    calm = {"face": 0, "cry": 0, "breathing": 0, "arms": 1, "legs": 0, "arousal": 0}
    services.assessment_create(case=case, nurse=nurse, items=ALL_SCORES, method="cot", resolve_related=False)
    services.assessment_create(case=case, nurse=second_nurse, items=calm, method="video")
    base = live_server.url
    page = new_page()
    sign_in(page, base, unit_admin.username, password)
    panel = page.locator("#disagreements")
    expect(panel).to_contain_text("For the charge nurse: 1 double score disagrees on pain")
    expect(panel).to_contain_text("NIPS 5")
    expect(panel).to_contain_text("NIPS 1")
    doc_shot(page, "disagreement_dashboard")
    panel.get_by_role("link", name=f"case {case.pk}").click()
    box = page.locator("#disagreement")
    expect(box).to_contain_text("The two blind scores disagree on pain")
    expect(page.locator(".assessment-list li")).to_have_count(2)
    box.get_by_label("Review note (optional)").fill("Re-scored together at the cot: pain, sucrose given")
    doc_shot(page, "disagreement_case")
    box.get_by_role("button", name="Mark reviewed").click()
    expect(page.locator("#disagreement")).to_contain_text("Reviewed by")
    page.goto(f"{base}/")
    expect(page.locator("#disagreements")).to_have_count(0)
