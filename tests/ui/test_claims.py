"""Claims never lose the nurse's work: the heartbeat, conflicts that keep her entries, J skipping held
cases, straight on to the next case after a submit (issue 13, item 4)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotations import selectors, services
from tests.ui.conftest import make_case
from triage.models import AuditEvent, TriageCase, UnitSettings

pytestmark = pytest.mark.django_db

SCORES = {"face": "1", "cry": "2", "breathing": "1", "arms": "0", "legs": "0", "arousal": "1"}


def heartbeat(client, case):
    return client.post(f"/api/v1/cases/{case.pk}/heartbeat/")


def lapse(case, minutes=1):
    TriageCase.objects.filter(pk=case.pk).update(claim_expires_at=timezone.now() - timedelta(minutes=minutes))


# --- the heartbeat --------------------------------------------------------------------------


def test_heartbeat_extends_the_holders_claim_by_the_unit_timeout_without_an_audit_row(client_for, nurse, case):
    UnitSettings.objects.update_or_create(unit=case.unit, defaults={"claim_timeout_minutes": 7})
    services.case_claim(case=case, nurse=nurse)
    TriageCase.objects.filter(pk=case.pk).update(claim_expires_at=timezone.now() + timedelta(seconds=20))
    audit_rows = AuditEvent.objects.count()

    response = heartbeat(client_for(nurse), case)

    assert response.status_code == 200, response.content
    body = response.json()
    assert 7 * 60 - 5 <= body["claim_seconds_left"] <= 7 * 60
    case.refresh_from_db()
    assert case.claimed_by == nurse and case.claim_expires_at > timezone.now() + timedelta(minutes=6)
    assert AuditEvent.objects.count() == audit_rows


def test_heartbeat_retakes_her_lapsed_claim_when_nobody_took_it_over(client_for, nurse, case):
    services.case_claim(case=case, nurse=nurse)
    lapse(case)

    response = heartbeat(client_for(nurse), case)

    assert response.status_code == 200 and response.json()["claim_seconds_left"] > 60
    case.refresh_from_db()
    assert case.claim_is_live() and case.claimed_by == nurse
    assert AuditEvent.objects.filter(action="case.claimed", object_id=str(case.pk)).count() == 2


def test_heartbeat_after_another_nurse_took_over_is_409_held(client_for, nurse, second_nurse, case):
    services.case_claim(case=case, nurse=nurse)
    lapse(case)
    services.case_claim(case=case, nurse=second_nurse)

    response = heartbeat(client_for(nurse), case)

    assert response.status_code == 409 and response.json()["code"] == "held"
    assert "Bella" in response.json()["detail"]
    case.refresh_from_db()
    assert case.claimed_by == second_nurse


def test_heartbeat_on_a_released_or_decided_case_is_409(client_for, nurse, second_nurse, case):
    services.case_claim(case=case, nurse=nurse)
    services.case_release(case=case, nurse=nurse)
    assert heartbeat(client_for(nurse), case).json()["code"] == "not_held"

    services.assessment_create(case=case, nurse=second_nurse, items={k: int(v) for k, v in SCORES.items()})
    response = heartbeat(client_for(nurse), case)
    assert response.status_code == 409 and response.json()["code"] == "decided"


def test_a_nurse_who_never_held_the_case_cannot_heartbeat_it_into_her_hands(client_for, second_nurse, case):
    response = heartbeat(client_for(second_nurse), case)
    assert response.status_code == 409 and response.json()["code"] == "not_held"
    case.refresh_from_db()
    assert case.claimed_by is None


# --- conflicts keep her entries -----------------------------------------------------------------


def test_a_refused_submit_shows_her_scores_and_note_again_never_an_empty_form(browser_for, nurse, second_nurse, case):
    services.case_claim(case=case, nurse=nurse)
    lapse(case)
    services.case_claim(case=case, nurse=second_nurse)  # her claim lapsed and Bella took the case

    response = browser_for(nurse).post(
        f"/annotations/cases/{case.pk}/assessment/", {**SCORES, "method": "cot", "note": "grimace at heel lance"}
    )

    assert response.status_code == 409
    page = response.content.decode()
    assert "Not saved:" in page and "Bella holds this case" in page and "Your entries are kept" in page
    assert 'name="cry" value="2" checked' in page
    assert "grimace at heel lance" in page
    assert not case.assessments.exists()


def test_entries_refused_because_the_case_was_decided_are_still_shown(browser_for, nurse, second_nurse, case):
    services.assessment_create(case=case, nurse=second_nurse, items={k: int(v) for k, v in SCORES.items()})

    response = browser_for(nurse).post(f"/annotations/cases/{case.pk}/assessment/", {**SCORES, "method": "cot", "note": "mine"})

    page = response.content.decode()
    assert response.status_code == 409 and 'id="nips-form"' in page and ">mine</textarea>" in page
    assert 'name="face" value="1" checked' in page


# --- J skips cases held by others; after submit, the next case ---------------------------------


def test_next_case_skips_cases_another_nurse_holds(nurse, second_nurse, neonate, model):
    first = make_case(neonate=neonate, model=model, p_pain=0.54)
    held = make_case(neonate=neonate, model=model, p_pain=0.52)
    free = make_case(neonate=neonate, model=model, p_pain=0.50)
    services.case_claim(case=held, nurse=second_nurse)

    assert selectors.case_neighbours(user=nurse, case=first)[1] == free
    assert selectors.case_neighbours(user=nurse, case=free)[0] == first
    # Bella, who holds it, still lands on it; once her claim lapses, Alice does too.
    assert selectors.case_neighbours(user=second_nurse, case=first)[1] == held
    lapse(held)
    assert selectors.case_neighbours(user=nurse, case=first)[1] == held


def test_the_case_pages_next_link_skips_a_case_another_nurse_holds(browser_for, nurse, second_nurse, neonate, model):
    first = make_case(neonate=neonate, model=model, p_pain=0.54)
    held = make_case(neonate=neonate, model=model, p_pain=0.52)
    free = make_case(neonate=neonate, model=model, p_pain=0.50)
    services.case_claim(case=held, nurse=second_nurse)

    page = browser_for(nurse).get(f"/cases/{first.pk}/").content.decode()
    assert f'data-next-url="/cases/{free.pk}/"' in page
    page = browser_for(nurse).get(f"/cases/{free.pk}/").content.decode()
    assert f'data-prev-url="/cases/{first.pk}/"' in page
    assert f'data-next-url="/cases/{held.pk}/"' in browser_for(second_nurse).get(f"/cases/{first.pk}/").content.decode()


def test_after_a_submit_the_nurse_goes_straight_to_the_next_case_she_can_score(
    browser_for, nurse, second_nurse, neonate, model
):
    first = make_case(neonate=neonate, model=model, p_pain=0.54)
    held = make_case(neonate=neonate, model=model, p_pain=0.52)
    free = make_case(neonate=neonate, model=model, p_pain=0.50)
    services.case_claim(case=held, nurse=second_nurse)
    client = browser_for(nurse)
    client.post(f"/cases/{first.pk}/claim/")

    response = client.post(f"/annotations/cases/{first.pk}/assessment/", {**SCORES, "method": "cot"})

    assert response.status_code == 302 and response["Location"] == f"/cases/{free.pk}/"
    # The last free case scored: back to the top of what is left, then to the queue.
    client.post(f"/cases/{free.pk}/claim/")
    assert client.post(f"/annotations/cases/{free.pk}/assessment/", {**SCORES, "method": "cot"})["Location"] == "/"
    lapse(held)
    other = make_case(neonate=neonate, model=model, p_pain=0.9)
    client.post(f"/cases/{held.pk}/claim/")
    assert client.post(f"/annotations/cases/{held.pk}/assessment/", {**SCORES, "method": "cot"})["Location"] == f"/cases/{other.pk}/"


def test_the_case_page_carries_the_countdown_and_the_heartbeat_url(browser_for, nurse, case):
    client = browser_for(nurse)
    client.post(f"/cases/{case.pk}/claim/")

    page = client.get(f"/cases/{case.pk}/").content.decode()

    assert f'data-heartbeat-url="/api/v1/cases/{case.pk}/heartbeat/"' in page
    assert f'data-release-url="/api/v1/cases/{case.pk}/release/"' in page
    assert 'id="claim-clock"' in page and ("15:00" in page or "14:59" in page)
    assert 'class="case-pin"' in page
