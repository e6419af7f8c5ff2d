"""Issue 13: "go to the cot" and one bedside observation resolving the baby's open cases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotations import bedside, services
from tests.ui.conftest import make_case
from triage.models import AuditEvent, TriageCase, UnitSettings

pytestmark = pytest.mark.django_db

ALL = {"face": 1, "cry": 2, "breathing": 1, "arms": 0, "legs": 0, "arousal": 1}  # total 5


@pytest.fixture
def baby_cases(neonate, model, other_neonate):
    """This baby: frames 2, 6 and 25 minutes old; another baby of the same bed count: 1 minute old."""
    return {
        "now": make_case(neonate=neonate, model=model, age_minutes=2),
        "recent": make_case(neonate=neonate, model=model, age_minutes=6),
        "old": make_case(neonate=neonate, model=model, age_minutes=25),
        "other_baby": make_case(neonate=other_neonate, model=model, age_minutes=1),
    }


def test_going_to_the_cot_claims_the_case_and_starts_the_observation(nurse, baby_cases):
    case = bedside.case_bedside_start(case=baby_cases["now"], nurse=nurse)
    assert case.claimed_by == nurse and case.claim_is_live() and bedside.case_observing_at_bedside(case)
    started = case.bedside_started_at
    again = bedside.case_bedside_start(case=case, nurse=nurse)  # pressed twice: the timer keeps running
    assert again.bedside_started_at == started and again.claim_expires_at >= case.claim_expires_at
    assert AuditEvent.objects.filter(action="case.bedside_started").count() == 2


def test_going_to_the_cot_on_a_case_held_by_another_nurse_is_refused(nurse, second_nurse, baby_cases):
    services.case_claim(case=baby_cases["now"], nurse=second_nurse)
    with pytest.raises(services.CaseConflict):
        bedside.case_bedside_start(case=baby_cases["now"], nurse=nurse)


def test_a_later_ordinary_claim_is_not_observing(nurse, baby_cases):
    case = bedside.case_bedside_start(case=baby_cases["now"], nurse=nurse)
    services.case_release(case=case, nurse=nurse)
    case = services.case_claim(case=case, nurse=nurse)
    assert not bedside.case_observing_at_bedside(case)


def test_one_observation_at_the_cot_resolves_the_babys_open_cases_in_the_window(nurse, baby_cases):
    bedside.case_bedside_start(case=baby_cases["now"], nurse=nurse)
    assert [c.pk for c in bedside.bedside_related_cases(case=baby_cases["now"], nurse=nurse)] == [
        baby_cases["recent"].pk
    ]
    source = services.assessment_create(case=baby_cases["now"], nurse=nurse, items=ALL, method="cot")
    copy = source.bedside_copies.get()
    assert copy.case_id == baby_cases["recent"].pk and (copy.total, copy.pain, copy.method) == (5, True, "cot")
    states = {k: TriageCase.objects.get(pk=c.pk).status for k, c in baby_cases.items()}
    assert states == {"now": "decided", "recent": "decided", "old": "open", "other_baby": "open"}
    # One alert for the one observation: the copies count on it, they do not page again.
    assert baby_cases["now"].neonate.alerts.count() == 1


def test_the_window_is_the_units_setting(nurse, unit, baby_cases):
    UnitSettings.objects.update_or_create(unit=unit, defaults={"bedside_window_minutes": 30})
    source = services.assessment_create(case=baby_cases["now"], nurse=nurse, items=ALL, method="cot")
    assert sorted(a.case_id for a in source.bedside_copies.all()) == sorted(
        [baby_cases["recent"].pk, baby_cases["old"].pk]
    )


def test_a_case_held_by_another_nurse_or_a_video_review_is_not_resolved(nurse, second_nurse, baby_cases):
    services.case_claim(case=baby_cases["recent"], nurse=second_nurse)
    source = services.assessment_create(case=baby_cases["now"], nurse=nurse, items=ALL, method="cot")
    assert not source.bedside_copies.exists()
    other = make_case(neonate=baby_cases["now"].neonate, model=baby_cases["now"].prediction.model_version)
    video = services.assessment_create(case=other, nurse=second_nurse, items=ALL, method="video")
    assert not video.bedside_copies.exists()


def test_resolving_can_be_turned_off(nurse, baby_cases):
    source = services.assessment_create(
        case=baby_cases["now"], nurse=nurse, items=ALL, method="cot", resolve_related=False
    )
    assert not source.bedside_copies.exists()
    assert TriageCase.objects.get(pk=baby_cases["recent"].pk).status == "open"


def test_the_api_goes_to_the_cot_and_names_the_cases_it_will_resolve(client_for, nurse, second_nurse, baby_cases):
    url = f"/api/v1/cases/{baby_cases['now'].pk}/bedside/"
    response = client_for(nurse).post(url)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["case"]["claimed_by"]["username"] == "alice"
    assert body["bedside"]["related_cases"] == [baby_cases["recent"].pk] and body["bedside"]["window_minutes"] == 10
    started = timezone.datetime.fromisoformat(body["bedside"]["started_at"].replace("Z", "+00:00"))
    until = timezone.datetime.fromisoformat(body["bedside"]["observe_until"].replace("Z", "+00:00"))
    assert until - started == timedelta(minutes=1)
    conflict = client_for(second_nurse).post(url)
    assert conflict.status_code == 409 and conflict.json()["code"] == "held"
    created = client_for(nurse).post(
        f"/api/v1/cases/{baby_cases['now'].pk}/assessment/", {**ALL, "method": "cot"}, format="json"
    )
    assert created.status_code == 201
    assert TriageCase.objects.get(pk=baby_cases["recent"].pk).status == "decided"


def test_the_case_page_offers_the_cot_then_shows_the_timer_and_what_it_resolves(browser_for, nurse, baby_cases):
    client = browser_for(nurse)
    case = baby_cases["now"]
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "Go to the cot" in page and "data-bedside-timer" not in page
    assert client.post(f"/cases/{case.pk}/bedside/").status_code == 302
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "Observing at the cot" in page and "data-bedside-timer" in page
    assert f"case {baby_cases['recent'].pk}</a>" in page and 'name="resolve_related" checked' in page
    assert 'name="method" value="cot" checked' in page
    response = client.post(
        f"/annotations/cases/{case.pk}/assessment/",
        {**{k: str(v) for k, v in ALL.items()}, "method": "cot", "resolve_related": "on"},
        follow=True,
    )
    assert f"resolved this baby&#x27;s case {baby_cases['recent'].pk}" in response.content.decode()


def test_the_form_resolves_nothing_else_unless_she_was_shown_it(browser_for, nurse, baby_cases):
    client = browser_for(nurse)
    client.post(f"/cases/{baby_cases['now'].pk}/claim/")
    client.post(
        f"/annotations/cases/{baby_cases['now'].pk}/assessment/",
        {**{k: str(v) for k, v in ALL.items()}, "method": "cot"},
    )
    assert TriageCase.objects.get(pk=baby_cases["recent"].pk).status == "open"


def test_the_bedside_window_is_a_unit_setting_over_the_api(client_for, unit_admin, unit):
    response = client_for(unit_admin).patch(f"/api/v1/units/{unit.pk}/", {"bedside_window_minutes": 20}, format="json")
    assert response.status_code == 200, response.json()
    assert UnitSettings.objects.get(unit=unit).bedside_window_minutes == 20
    bad = client_for(unit_admin).patch(f"/api/v1/units/{unit.pk}/", {"bedside_window_minutes": 0}, format="json")
    assert bad.status_code == 400
