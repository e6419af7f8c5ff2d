"""Issue 13, item 8: two blind scores that disagree on pain are flagged, shown, counted and reviewed."""

from __future__ import annotations

import pytest

from annotations import services
from annotations.agreement import agreement_by_model_version
from annotations.models import ScoreDisagreement
from tests.factories import UserFactory
from tests.ui.conftest import make_case
from triage.models import AuditEvent, Role

pytestmark = pytest.mark.django_db

PAIN = {"face": 1, "cry": 2, "breathing": 1, "arms": 0, "legs": 0, "arousal": 1}  # total 5
CALM = {"face": 0, "cry": 0, "breathing": 0, "arms": 1, "legs": 0, "arousal": 0}  # total 1


def double_scored(neonate, model, first, second, *, first_items=PAIN, second_items=CALM, **second_kwargs):
    case = make_case(neonate=neonate, model=model, assessments_required=2)
    services.assessment_create(case=case, nurse=first, items=first_items, method="cot", resolve_related=False)
    second_kwargs = {"method": "cot", "resolve_related": False, **second_kwargs}
    services.assessment_create(case=case, nurse=second, items=second_items, **second_kwargs)
    case.refresh_from_db()
    return case


def test_a_pain_vs_no_pain_pair_is_flagged_when_the_case_is_decided(neonate, model, nurse, second_nurse):
    case = double_scored(neonate, model, nurse, second_nurse)
    flag = ScoreDisagreement.objects.get(case=case)
    assert (flag.first.pain, flag.second.pain, flag.reviewed_at) == (True, False, None)
    assert case.final_pain is True  # pain if either nurse says pain: the flag does not change the verdict
    assert AuditEvent.objects.filter(action="disagreement.flagged").count() == 1


def test_agreeing_scores_or_a_single_score_are_not_flagged(neonate, model, nurse, second_nurse):
    double_scored(neonate, model, nurse, second_nurse, second_items={**PAIN, "cry": 1})  # 4: pain too
    single = make_case(neonate=neonate, model=model)
    services.assessment_create(case=single, nurse=nurse, items=CALM, method="cot", resolve_related=False)
    assert not ScoreDisagreement.objects.exists()


def test_a_face_only_call_that_disagrees_with_a_full_nips_is_flagged(neonate, model, nurse, second_nurse):
    case = double_scored(
        neonate, model, nurse, second_nurse, second_items={"face": 0}, method="image", nurse_call=False
    )
    assert case.disagreement.second.kind == "face_only"


def test_the_disagreement_counts_in_the_nurses_kappa(neonate, model, nurse, second_nurse, unit):
    double_scored(neonate, model, nurse, second_nurse)
    double_scored(neonate, model, nurse, second_nurse, second_items=PAIN)
    row = agreement_by_model_version(unit=unit)[0]
    assert (row["n_double_scored"], row["n_disagreements"], row["n_disagreements_reviewed"]) == (2, 1, 0)
    assert row["agreement_nurse_nurse"] == pytest.approx(0.5)


def test_the_charge_nurse_sees_it_on_the_dashboard_and_both_scores_on_the_case(
    browser_for, neonate, model, nurse, second_nurse, unit_admin
):
    case = double_scored(neonate, model, nurse, second_nurse)
    client = browser_for(unit_admin)
    dashboard = client.get("/").content.decode()
    assert "For the charge nurse: 1 double score disagrees on pain" in dashboard
    assert f"case {case.pk}</a>" in dashboard
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "The two blind scores disagree on pain" in page and "NIPS 5" in page and "NIPS 1" in page
    assert "Mark reviewed" in page
    response = client.post(f"/cases/{case.pk}/disagreement/review/", {"note": "re-scored at the cot"}, follow=True)
    assert "marked reviewed" in response.content.decode()
    assert "For the charge nurse" not in client.get("/").content.decode()
    assert "Reviewed by" in client.get(f"/cases/{case.pk}/").content.decode()


def test_the_api_lists_and_reviews_and_a_scorer_may_not_review_her_own(
    client_for, neonate, model, nurse, second_nurse, unit, unit_admin
):
    case = double_scored(neonate, model, nurse, second_nurse)
    listed = client_for(unit_admin).get("/api/v1/disagreements/").json()
    assert [d["case"] for d in listed] == [case.pk] and listed[0]["first"]["pain"] is True
    url = f"/api/v1/cases/{case.pk}/disagreement/review/"
    assert client_for(second_nurse).post(url, {}, format="json").status_code == 403
    third = UserFactory(username="cora", role=Role.NURSE, unit=unit)
    response = client_for(third).post(url, {"note": "seen"}, format="json")
    assert response.status_code == 200 and response.json()["reviewed_by"]["username"] == "cora"
    again = client_for(unit_admin).post(url, {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "reviewed"
    assert client_for(unit_admin).get("/api/v1/disagreements/").json() == []
    undisputed = make_case(neonate=neonate, model=model)
    assert client_for(unit_admin).post(f"/api/v1/cases/{undisputed.pk}/disagreement/review/").status_code == 404
