"""Cases, claims, assessments and acknowledgements over the REST API, with the role x endpoint matrix."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import NipsAssessment
from tests.factories import AlertFactory
from tests.ui.conftest import make_case
from triage.models import Alert, AuditEvent, TriageCase

pytestmark = pytest.mark.django_db

SCORES = {"face": 1, "cry": 2, "breathing": 1, "arms": 0, "legs": 0, "arousal": 1, "note": "grimace, cry"}


def url(name: str, pk=None) -> str:
    paths = {
        "list": "/api/v1/cases/?status=open",
        "detail": f"/api/v1/cases/{pk}/",
        "claim": f"/api/v1/cases/{pk}/claim/",
        "release": f"/api/v1/cases/{pk}/release/",
        "heartbeat": f"/api/v1/cases/{pk}/heartbeat/",
        "assessment": f"/api/v1/cases/{pk}/assessment/",
        "ack": f"/api/v1/alerts/{pk}/acknowledge/",
        "export": "/api/v1/assessments/export.csv",
    }
    return paths[name]


# --- permission matrix -------------------------------------------------------------------

PEOPLE = ["nurse", "other_nurse", "unit_admin", "ml_engineer", "device", "anonymous"]

# (endpoint, method, expected status for each of PEOPLE in order: nurse, other_nurse, unit_admin,
# ml_engineer, device, anonymous); objects belong to the nurse's unit.
EVERYONE = [
    ("list", "get", (200, 200, 200, 403, 403, 401)),
    ("detail", "get", (200, 404, 200, 403, 403, 401)),
    ("claim", "post", (200, 404, 403, 403, 403, 401)),
    ("release", "post", (200, 404, 200, 403, 403, 401)),
    ("heartbeat", "post", (409, 404, 403, 403, 403, 401)),  # 409: she does not hold it (not_held)
    ("assessment", "post", (201, 404, 403, 403, 403, 401)),
    ("ack", "post", (200, 404, 200, 403, 403, 401)),
    ("export", "get", (200, 200, 200, 403, 403, 401)),
]

# (endpoint, method, {person: expected status})
MATRIX = [(e, m, dict(zip(PEOPLE, codes, strict=True))) for e, m, codes in EVERYONE] + [
    # Methods an endpoint does not take.
    ("list", "post", {"nurse": 405, "unit_admin": 405, "anonymous": 401}),
    ("claim", "get", {"nurse": 405, "anonymous": 401}),
    ("heartbeat", "get", {"nurse": 405}),
    ("assessment", "get", {"nurse": 405}),
    ("detail", "delete", {"nurse": 405, "unit_admin": 405}),
]


@pytest.mark.parametrize(
    "endpoint, method, person, expected",
    [(e, m, p, code) for e, m, codes in MATRIX for p, code in codes.items()],
)
def test_permission_matrix(request, client_for, case, neonate, endpoint, method, person, expected):
    user = None if person == "anonymous" else request.getfixturevalue(person)
    user = getattr(user, "user", user)  # the device fixture is a Device; it signs in as its user
    pk = AlertFactory(neonate=neonate).pk if endpoint == "ack" else case.pk
    client = client_for(user)
    body = SCORES if endpoint == "assessment" else {"note": "seen"} if endpoint == "ack" else None
    response = (
        getattr(client, method)(url(endpoint, pk), body, format="json")
        if body
        else getattr(client, method)(url(endpoint, pk))
    )
    assert response.status_code == expected, response.content[:300]


def test_anonymous_session_gets_401_json_not_a_login_page(api_client, case):
    response = api_client.get(url("detail", case.pk))
    assert response.status_code == 401 and response["Content-Type"].startswith("application/json")


# --- queue -------------------------------------------------------------------------------


def test_queue_lists_own_unit_open_cases_pain_first(client_for, nurse, neonate, other_neonate, model):
    """Highest p(pain) first, oldest first among equals: a likely-pain frame is never behind unlikely ones."""
    older_equal = make_case(neonate=neonate, model=model, p_pain=0.53, age_minutes=30)
    newer_equal = make_case(neonate=neonate, model=model, p_pain=0.53, age_minutes=2)
    most_uncertain = make_case(neonate=neonate, model=model, p_pain=0.50, age_minutes=1)
    less_uncertain = make_case(neonate=neonate, model=model, p_pain=0.46, age_minutes=60)  # least pain-like
    decided = make_case(neonate=neonate, model=model, p_pain=0.51, status=TriageCase.Status.DECIDED)
    foreign = make_case(neonate=other_neonate, model=model, p_pain=0.5)
    response = client_for(nurse).get(url("list"))
    assert response.status_code == 200
    ids = [row["id"] for row in response.json()["results"]]
    assert ids == [older_equal.pk, newer_equal.pk, most_uncertain.pk, less_uncertain.pk]
    assert decided.pk not in ids and foreign.pk not in ids
    row = response.json()["results"][0]
    assert row["neonate"] == {"id": neonate.pk, "mrn": "MRN-N-001", "bed": "4"}
    assert row["prediction"]["model_version"]["label"] == "painnet v2.1"
    assert row["prediction"]["crop_url"] == f"/predictions/{older_equal.prediction.pk}/crop"
    assert row["threshold"] == 0.55 and row["claimed_by"] is None


def test_queue_shows_the_holder_of_a_claimed_case(client_for, nurse, second_nurse, case):
    client_for(second_nurse).post(url("claim", case.pk))
    row = client_for(nurse).get(url("list")).json()["results"][0]
    assert row["status"] == "claimed" and row["claimed_by"]["username"] == "bella" and row["claim_live"] is True


def test_queue_status_filter_validates(client_for, nurse, case):
    assert client_for(nurse).get("/api/v1/cases/?status=bogus").status_code == 400
    assert client_for(nurse).get("/api/v1/cases/?status=decided").json()["count"] == 0


def test_queue_pages_count_and_cover_every_waiting_case_once(client_for, nurse, second_nurse, neonate, model):
    cases = [make_case(neonate=neonate, model=model, p_pain=0.5 + (i % 5) / 100, crop=i % 2 == 0) for i in range(12)]
    scored = cases[4]  # double-scored, and she scored it: blind, so not in her queue nor in her count
    TriageCase.objects.filter(pk=scored.pk).update(assessments_required=2)
    NipsAssessment.objects.create(case=scored, nurse=nurse, face=0, cry=0, breathing=0, arms=0, legs=0, arousal=0)
    expected = [c.pk for c in sorted(cases, key=lambda c: (-c.p_pain, c.created_at, c.pk)) if c.pk != scored.pk]
    client = client_for(nurse)
    seen = []
    for page in (1, 2, 3):
        body = client.get(f"{url('list')}&page_size=5&page={page}").json()
        assert body["count"] == 11
        seen += [row["id"] for row in body["results"]]
    assert seen == expected
    assert body["next"] is None and body["previous"] is not None
    assert client.get(f"{url('list')}&page_size=5&page=4").status_code == 404
    assert client_for(second_nurse).get(url("list")).json()["count"] == 12


def test_queue_keyset_pages_follow_the_queue_order_from_any_case(client_for, nurse, neonate, other_neonate, model):
    cases = [make_case(neonate=neonate, model=model, p_pain=0.5 + (i % 3) / 100, crop=False) for i in range(11)]
    expected = [c.pk for c in sorted(cases, key=lambda c: (-c.p_pain, c.created_at, c.pk))]
    client = client_for(nurse)
    first = client.get(f"{url('list')}&page_size=4").json()
    seen, body = [row["id"] for row in first["results"]], first
    body = client.get(f"{url('list')}&page_size=4&after={seen[-1]}").json()
    while True:
        assert body["count"] == 11 and body["previous"] is None
        seen += [row["id"] for row in body["results"]]
        if body["next"] is None:
            break
        assert f"after={seen[-1]}" in body["next"] and "page=" not in body["next"]
        body = client.get(body["next"]).json()
    assert seen == expected
    # The case a cursor names may have been decided since: the queue goes on after its place.
    TriageCase.objects.filter(pk=expected[5]).update(status=TriageCase.Status.DECIDED, decided_at=timezone.now())
    after_decided = client.get(f"{url('list')}&after={expected[5]}").json()["results"]
    assert [row["id"] for row in after_decided] == expected[6:]
    # Decided cases, newest decision first, page by page.
    TriageCase.objects.filter(pk__in=expected[:3]).update(status=TriageCase.Status.DECIDED, decided_at=timezone.now())
    decided = client.get("/api/v1/cases/?status=decided&page_size=2").json()
    rest = client.get(decided["next"].replace("page=2", f"after={decided['results'][-1]['id']}")).json()
    assert len(decided["results"]) + len(rest["results"]) == decided["count"] == 4
    # Another unit's case, an open case in the decided order, nonsense: 400, nothing leaks.
    foreign = make_case(neonate=other_neonate, model=model)
    for cursor, status in (
        (foreign.pk, "open"),
        (expected[7], "decided"),
        ("x", "open"),
        ("", "open"),
        ("9" * 30, "open"),
        ("²", "open"),
    ):
        response = client.get(f"/api/v1/cases/?status={status}&after={cursor}")
        assert response.status_code == 400 and "after" in response.json()


def test_a_queue_row_says_what_the_case_detail_says(client_for, nurse, second_nurse, neonate, model):
    """Queue pages are built from columns, not the serializer: every field must say what the case detail says."""
    from django.core.files.base import ContentFile

    from tests.factories import ModelVersionFactory
    from tests.ui.conftest import face_png

    held = make_case(neonate=neonate, model=model)  # held by a colleague, with a crop and a saliency map
    client_for(second_nurse).post(url("claim", held.pk))
    held.prediction.saliency.save("map.png", ContentFile(face_png()), save=True)
    expired = make_case(
        neonate=neonate, model=ModelVersionFactory(name="bootstrap", is_bootstrap=True, unit=None, status="retired")
    )
    TriageCase.objects.filter(pk=expired.pk).update(
        status=TriageCase.Status.CLAIMED,
        claimed_by=second_nurse,
        claimed_at=timezone.now() - timedelta(hours=1),
        claim_expires_at=timezone.now() - timedelta(minutes=1),
    )
    blind = make_case(neonate=neonate, model=model, crop=False)  # double-scored, one score in
    TriageCase.objects.filter(pk=blind.pk).update(assessments_required=2)
    NipsAssessment.objects.create(case=blind, nurse=second_nurse, face=1, cry=1, breathing=1, arms=0, legs=0, arousal=0)
    decided = make_case(neonate=neonate, model=model)
    TriageCase.objects.filter(pk=decided.pk).update(
        status=TriageCase.Status.DECIDED, decided_at=timezone.now(), final_pain=True
    )
    client = client_for(nurse)
    rows = client.get(url("list")).json()["results"] + client.get("/api/v1/cases/?status=decided").json()["results"]
    rows += client.get(f"{url('list')}&after={rows[0]['id']}").json()["results"]  # keyset pages too
    assert {row["id"] for row in rows} == {held.pk, expired.pk, blind.pk, decided.pk}
    for row in rows:
        detail = client.get(url("detail", row["id"])).json()
        detail.pop("assessments")
        assert abs(row.pop("age_seconds") - detail.pop("age_seconds")) <= 1
        assert row == detail
    by_id = {row["id"]: row for row in rows}
    assert by_id[held.pk]["claimed_by"]["name"] == "Bella" and by_id[held.pk]["prediction"]["saliency_url"]
    assert by_id[expired.pk]["claimed_by"] is None and by_id[expired.pk]["prediction"]["model_version"]["is_bootstrap"]
    assert by_id[blind.pk]["assessments_done"] == 1 and by_id[blind.pk]["prediction"]["crop_url"] is None
    assert by_id[decided.pk]["final_pain"] is True and by_id[decided.pk]["decided_at"]


def test_queue_query_count_does_not_grow_with_its_length(client_for, nurse, neonate, model, django_assert_num_queries):
    client = client_for(nurse)
    for _ in range(3):
        make_case(neonate=neonate, model=model)
    client.get(url("list"))  # warm the token/session lookups
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert client.get(url("list")).json()["count"] == 3
    for _ in range(27):
        make_case(neonate=neonate, model=model)
    with django_assert_num_queries(len(few.captured_queries)):
        assert client.get(url("list")).json()["count"] == 30


def test_queue_query_count_is_small(client_for, nurse, neonate, model, django_assert_max_num_queries):
    for _ in range(10):
        make_case(neonate=neonate, model=model)
    client = client_for(nurse)
    with django_assert_max_num_queries(6):
        client.get(url("list"))


# --- claims and assessments --------------------------------------------------------------


def test_claim_race_second_nurse_gets_409(client_for, nurse, second_nurse, case):
    first = client_for(nurse).post(url("claim", case.pk))
    assert first.status_code == 200 and first.json()["claimed_by"]["username"] == "alice"
    second = client_for(second_nurse).post(url("claim", case.pk))
    assert second.status_code == 409 and second.json()["code"] == "held"
    assert "Alice" in second.json()["detail"]


def test_expired_claim_is_taken_over(client_for, nurse, second_nurse, case):
    client_for(nurse).post(url("claim", case.pk))
    TriageCase.objects.filter(pk=case.pk).update(claim_expires_at=timezone.now() - timedelta(minutes=1))
    response = client_for(second_nurse).post(url("claim", case.pk))
    assert response.status_code == 200 and response.json()["claimed_by"]["username"] == "bella"


def test_assessment_returns_total_rule_and_pain_and_the_case_leaves_the_queue(client_for, nurse, case):
    client = client_for(nurse)
    client.post(url("claim", case.pk))
    response = client.post(url("assessment", case.pk), SCORES, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["total"], body["rule"], body["pain"]) == (5, "total>=3", True)
    assert body["case_decided"] is True and body["final_pain"] is True and body["alert_id"] == Alert.objects.get().pk
    assert client.get(url("list")).json()["count"] == 0
    again = client.post(url("assessment", case.pk), SCORES, format="json")
    assert again.status_code == 409 and again.json()["code"] in {"decided", "already_scored"}


def test_assessment_on_a_case_held_by_another_nurse_is_409(client_for, nurse, second_nurse, case):
    client_for(nurse).post(url("claim", case.pk))
    response = client_for(second_nurse).post(url("assessment", case.pk), SCORES, format="json")
    assert response.status_code == 409 and not NipsAssessment.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({**SCORES, "face": 2}, "face"),
        ({**SCORES, "cry": 3}, "cry"),
        ({**SCORES, "breathing": -1}, "breathing"),
        ({**SCORES, "arms": "one"}, "arms"),
        ({**SCORES, "legs": 0.5}, "legs"),
        ({k: v for k, v in SCORES.items() if k != "arousal"}, "arousal"),
        ({"unable_to_assess": True}, "unable_reason"),
        ({**SCORES, "note": "x" * 2001}, "note"),
    ],
)
def test_assessment_validation_errors_name_the_field(client_for, nurse, case, body, field):
    response = client_for(nurse).post(url("assessment", case.pk), body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_unable_to_assess_over_the_api(client_for, nurse, case):
    response = client_for(nurse).post(
        url("assessment", case.pk), {"unable_to_assess": True, "unable_reason": "Baby being handled"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["total"] is None and response.json()["pain"] is None and response.json()["unable_to_assess"]


def test_second_scorer_does_not_see_the_first_scores_until_decided(client_for, nurse, second_nurse, neonate, model):
    case = make_case(neonate=neonate, model=model, assessments_required=2)
    assert client_for(nurse).post(url("assessment", case.pk), SCORES, format="json").status_code == 201
    # The first scorer no longer sees the case in her queue; the second does, blind.
    assert client_for(nurse).get(url("list")).json()["count"] == 0
    detail = client_for(second_nurse).get(url("detail", case.pk)).json()
    assert detail["assessments"] == [] and detail["assessments_done"] == 1 and detail["status"] == "open"
    own = client_for(nurse).get(url("detail", case.pk)).json()
    assert [a["nurse"]["username"] for a in own["assessments"]] == ["alice"]
    calm = {"face": 0, "cry": 0, "breathing": 0, "arms": 0, "legs": 0, "arousal": 0}
    second = client_for(second_nurse).post(url("assessment", case.pk), calm, format="json")
    assert second.status_code == 201 and second.json()["case_decided"] and second.json()["final_pain"] is True
    decided = client_for(second_nurse).get(url("detail", case.pk)).json()
    assert len(decided["assessments"]) == 2


def test_acknowledge_alert_over_the_api(client_for, nurse, neonate):
    alert = AlertFactory(neonate=neonate)
    response = client_for(nurse).post(url("ack", alert.pk), {"note": "paracetamol given"}, format="json")
    assert response.status_code == 200 and response.json()["acknowledged_by"] == "alice"
    assert client_for(nurse).post(url("ack", alert.pk), {}, format="json").status_code == 409
    assert AuditEvent.objects.filter(action="alert.acknowledged", object_id=str(alert.pk)).count() == 1


def test_every_write_is_audited_with_the_ip(client_for, nurse, case):
    client = client_for(nurse)
    client.post(url("claim", case.pk), REMOTE_ADDR="10.1.2.3")
    client.post(url("assessment", case.pk), SCORES, format="json", REMOTE_ADDR="10.1.2.3")
    events = AuditEvent.objects.filter(actor=nurse).order_by("id")
    assert [e.action for e in events] == ["case.claimed", "assessment.created", "case.decided"]
    assert {e.ip for e in events} == {"10.1.2.3"}


def test_an_audit_case_is_scored_blind_until_decided(client_for, browser_for, nurse, neonate, model):
    """A random automatic verdict sent to a nurse: no p(pain), verdict or confidence in the API, queue or page."""
    audit = make_case(neonate=neonate, model=model, p_pain=0.97, is_audit=True)
    listed = client_for(nurse).get(url("list")).json()["results"][0]
    detail = client_for(nurse).get(url("detail", audit.pk)).json()
    for body in (listed, detail):
        assert body["is_audit"] is True and body["confidence"] is None
        assert body["prediction"]["p_pain"] is None and body["prediction"]["label"] is None
    page = browser_for(nurse).get(f"/cases/{audit.pk}/").content.decode()
    assert "Audit case." in page and "0.97" not in page
    queue = browser_for(nurse).get("/").content.decode()
    assert "Audit: scored blind" in queue and "0.97" not in queue
    TriageCase.objects.filter(pk=audit.pk).update(status=TriageCase.Status.DECIDED)
    assert client_for(nurse).get(url("detail", audit.pk)).json()["prediction"]["p_pain"] == 0.97
