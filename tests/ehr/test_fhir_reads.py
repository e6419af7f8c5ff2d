"""FHIR read and search: every resource validates, units see only their own data, errors are OperationOutcomes."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from tests.ehr.conftest import auto_verdict, decided_assessment
from triage.models import AuditEvent

pytestmark = pytest.mark.django_db

FHIR_JSON = "application/fhir+json"


def _json(response):
    assert response["Content-Type"].startswith(FHIR_JSON), response["Content-Type"]
    return response.json()


def test_metadata_is_a_valid_capability_statement_open_to_all(api_client, fhir_valid):
    response = api_client.get("/fhir/metadata")

    body = _json(response)
    assert response.status_code == 200
    fhir_valid(body)
    assert body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert {"Observation", "Patient", "Practitioner", "Device"} <= types
    assert body["rest"][0]["operation"][0]["name"] == "export"


def test_nips_observation_carries_items_total_rule_performer_patient_and_model(client_for, nurse, nips, fhir_valid):
    body = _json(client_for(nurse).get(f"/fhir/Observation/nips-{nips.pk}"))

    fhir_valid(body)
    components = {c["code"]["coding"][0]["code"]: c for c in body["component"]}
    assert [
        components[f"nips-{item}"]["valueInteger"] for item in ("face", "cry", "breathing", "arms", "legs", "arousal")
    ] == [1, 2, 0, 1, 0, 1]
    assert body["valueInteger"] == 5
    assert components["nips-rule"]["valueString"] == "total>=3"
    assert body["interpretation"][0]["coding"][1]["code"] == "POS"
    assert body["performer"][0]["reference"] == f"Practitioner/{nurse.pk}"
    assert body["subject"]["identifier"]["value"] == "MRN-NORTH-1"
    assert body["derivedFrom"][0]["reference"] == f"Observation/ai-{nips.case.prediction_id}"
    assert body["effectiveDateTime"].endswith("Z")


def test_unable_to_assess_has_no_total_but_a_reason(client_for, nurse, nips, fhir_valid):
    for item in ("face", "cry", "breathing", "arms", "legs", "arousal"):
        setattr(nips, item, None)
    nips.total, nips.pain, nips.unable_to_assess, nips.unable_reason = None, None, True, "Sedated"
    nips.save()

    body = _json(client_for(nurse).get(f"/fhir/Observation/nips-{nips.pk}"))

    fhir_valid(body)
    assert "valueInteger" not in body and body["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert "interpretation" not in body
    assert body["note"] == [{"text": "Sedated"}]


def test_ai_observation_has_probability_threshold_label_and_model_device(client_for, nurse, verdict, model, fhir_valid):
    body = _json(client_for(nurse).get(f"/fhir/Observation/ai-{verdict.pk}"))
    device = _json(client_for(nurse).get(f"/fhir/Device/{model.pk}"))

    fhir_valid(body)
    fhir_valid(device)
    figures = {c["code"]["coding"][0]["code"]: c.get("valueQuantity", {}).get("value") for c in body["component"]}
    assert figures["ai-p-pain"] == 0.9 and figures["ai-threshold"] == 0.55
    assert body["status"] == "final"  # routed auto
    assert body["valueCodeableConcept"]["coding"][0]["code"] == "pain"
    assert body["device"]["reference"] == f"Device/{model.pk}"
    assert model.sha256 in body["method"]["text"]
    assert {"type": {"text": "weights sha256"}, "value": model.sha256} in device["version"]


def test_patient_and_practitioner_read(client_for, nurse, neonate, fhir_valid):
    patient = _json(client_for(nurse).get(f"/fhir/Patient/{neonate.pk}"))
    practitioner = _json(client_for(nurse).get(f"/fhir/Practitioner/{nurse.pk}"))

    fhir_valid(patient)
    fhir_valid(practitioner)
    assert patient["identifier"][0]["value"] == neonate.mrn
    assert practitioner["name"][0]["text"]


def test_search_pages_by_patient_and_date_with_next_links(client_for, nurse, neonate, model, fhir_valid):
    now = timezone.now()
    for minutes in range(5):
        decided_assessment(neonate=neonate, nurse=nurse, model=model, captured_at=now - timedelta(minutes=10 + minutes))
    old = auto_verdict(neonate=neonate, model=model, captured_at=now - timedelta(days=3))
    since = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    client = client_for(nurse)

    seen, url, pages = [], f"/fhir/Observation?patient={neonate.mrn}&date=ge{since}&_count=4", 0
    while url:
        body = _json(client.get(url))
        fhir_valid(body)
        assert body["total"] == 10  # 5 NIPS + the 5 model observations they derive from
        seen += [e["resource"]["id"] for e in body["entry"]]
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        pages += 1

    assert pages == 3 and len(seen) == len(set(seen)) == 10
    assert f"ai-{old.pk}" not in seen
    older = _json(client.get(f"/fhir/Observation?patient={neonate.mrn}&date=lt{since}"))
    assert [e["resource"]["id"] for e in older["entry"]] == [f"ai-{old.pk}"]
    only_nips = _json(client.get(f"/fhir/Observation?patient={neonate.mrn}&code=nips-total"))
    assert only_nips["total"] == 5


def test_a_partial_date_means_the_whole_day(client_for, nurse, neonate, model):
    day = timezone.now().astimezone(timezone.get_current_timezone()).date()
    verdict = auto_verdict(neonate=neonate, model=model)

    body = client_for(nurse).get(f"/fhir/Observation?date={day.isoformat()}").json()

    assert [e["resource"]["id"] for e in body["entry"]] == [f"ai-{verdict.pk}"]


def test_a_blind_first_score_waiting_for_the_second_is_not_published(client_for, nurse, nips):
    nips.case.status = "open"
    nips.case.save()

    assert client_for(nurse).get(f"/fhir/Observation/nips-{nips.pk}").status_code == 404


@pytest.mark.parametrize(
    "query",
    ["date=gt2026-13-01", "date=sa2026-01-01", "_count=abc", "_count=0", "patient=a&patient=b", "date=yesterday"],
)
def test_bad_search_parameters_are_a_400_operation_outcome(client_for, nurse, fhir_valid, query):
    response = client_for(nurse).get(f"/fhir/Observation?{query}")

    assert response.status_code == 400
    body = _json(response)
    fhir_valid(body)
    assert body["issue"][0]["code"] == "invalid"


def test_unknown_parameters_are_ignored_unless_strict(client_for, nurse):
    client = client_for(nurse)

    assert client.get("/fhir/Observation?color=red").status_code == 200
    assert client.get("/fhir/Observation?color=red", HTTP_PREFER="handling=strict").status_code == 400


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/fhir/Observation/nips-999999", 404),
        ("/fhir/Observation/bogus", 404),
        ("/fhir/Patient/abc", 404),
        ("/fhir/Encounter/1", 404),
    ],
)
def test_errors_are_operation_outcomes(client_for, nurse, fhir_valid, path, status):
    response = client_for(nurse).get(path)

    assert response.status_code == status
    fhir_valid(_json(response))


def test_anonymous_401_and_ml_engineer_403_are_operation_outcomes(api_client, client_for, ml_engineer, fhir_valid):
    anonymous = api_client.get("/fhir/Observation")
    engineer = client_for(ml_engineer).get("/fhir/Observation")

    assert anonymous.status_code == 401 and "WWW-Authenticate" in anonymous
    assert engineer.status_code == 403
    for response in (anonymous, engineer):
        assert fhir_valid(_json(response)).issue[0].code in {"login", "forbidden"}


def test_another_unit_sees_none_of_it(client_for, other_nurse, nips, verdict, neonate, nurse):
    client = client_for(other_nurse)

    search = client.get(f"/fhir/Observation?patient={neonate.mrn}").json()
    assert search["total"] == 0 and search.get("entry", []) == []
    for path in (
        f"/fhir/Observation/nips-{nips.pk}",
        f"/fhir/Observation/ai-{verdict.pk}",
        f"/fhir/Patient/{neonate.pk}",
        f"/fhir/Practitioner/{nurse.pk}",
    ):
        assert client.get(path).status_code == 404, path


def test_reads_of_patient_data_are_audited(client_for, nurse, nips):
    client_for(nurse).get(f"/fhir/Observation/nips-{nips.pk}")

    assert AuditEvent.objects.filter(action="phi.read", actor=nurse, after__route="fhir-observation-read").exists()


def test_other_formats_are_refused_with_406(client_for, nurse):
    assert client_for(nurse).get("/fhir/Observation?_format=xml").status_code == 406


def test_a_face_only_review_is_no_nips_total_and_bedside_time_is_effective(client_for, nurse, nips, fhir_valid):
    observed = timezone.now() - timedelta(minutes=3)
    for item in ("cry", "breathing", "arms", "legs", "arousal"):
        setattr(nips, item, None)
    nips.kind, nips.method, nips.total, nips.pain, nips.observed_at = "face_only", "image", None, True, observed
    nips.save()
    client = client_for(nurse)

    body = _json(client.get(f"/fhir/Observation/nips-{nips.pk}"))

    fhir_valid(body)
    assert body["code"]["coding"][0]["code"] == "nips-review"
    assert "valueInteger" not in body and "nurse's call" in body["interpretation"][0]["text"]
    assert body["method"]["text"] == "NIPS, from the image only"
    assert body["effectiveDateTime"] == observed.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert client.get("/fhir/Observation?code=nips-total").json()["total"] == 0
    assert [e["resource"]["id"] for e in client.get("/fhir/Observation?code=nips-review").json()["entry"]] == [
        f"nips-{nips.pk}"
    ]
    since = (observed - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert client.get(f"/fhir/Observation?code=nips-review&date=ge{since}").json()["total"] == 1
