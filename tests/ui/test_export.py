"""CSV export: exact columns, spreadsheet-safe cells, filters, scope, streaming and audit."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations import services
from annotations.export import EXPORT_COLUMNS, neutralise
from tests.ui.conftest import make_case
from triage.models import AuditEvent

pytestmark = pytest.mark.django_db

EXPECTED_HEADER = (
    "assessment_id,neonate_mrn,frame_id,captured_at,model_version,p_pain,confidence,threshold,routed_to,nurse,"
    "face,cry,breathing,arms,legs,arousal,nips_total,pain,rule,note,assessed_at,"
    "kind,observation_method,observed_at,nurse_call"
)
SCORES = {"face": 1, "cry": 2, "breathing": 1, "arms": 0, "legs": 0, "arousal": 1}


def download(client, query: str = "") -> tuple[object, str]:
    response = client.get(f"/api/v1/assessments/export.csv{query}")
    body = b"".join(response.streaming_content).decode("utf-8") if response.status_code == 200 else ""
    return response, body


def rows_of(body: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"), newline="")))


def test_columns_are_exactly_the_contract_in_order(client_for, nurse):
    assert ",".join(EXPORT_COLUMNS) == EXPECTED_HEADER
    response, body = download(client_for(nurse))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="nips-assessments-north-')
    assert response.streaming
    assert body.splitlines()[0] == EXPECTED_HEADER


def test_one_row_per_assessment_with_formatted_values(client_for, nurse, case):
    assessment = services.assessment_create(case=case, nurse=nurse, items=SCORES, note="grimace", intubated=True)
    _, body = download(client_for(nurse))
    [row] = rows_of(body)
    prediction = case.prediction
    assert row["assessment_id"] == str(assessment.pk)
    assert row["neonate_mrn"] == "MRN-N-001"
    assert row["frame_id"] == str(prediction.frame_id)
    assert row["captured_at"].endswith("Z") and "T" in row["captured_at"]
    assert row["model_version"] == "painnet v2.1"
    assert (row["p_pain"], row["confidence"], row["threshold"]) == ("0.5200", "0.5200", "0.5500")
    assert row["routed_to"] == "nurse" and row["nurse"] == "alice"
    assert [row[k] for k in ("face", "cry", "breathing", "arms", "legs", "arousal")] == ["1", "2", "1", "0", "0", "1"]
    assert (row["nips_total"], row["pain"], row["rule"]) == ("5", "true", "total>=3")
    assert row["note"] == "Intubated: silent cry scored | grimace"
    assert row["assessed_at"].endswith("Z")


def test_formula_cells_are_neutralised_and_awkward_text_round_trips(client_for, nurse, neonate, model):
    from annotations.models import NipsAssessment
    from tests.factories import UserFactory

    nasty = [
        '=HYPERLINK("http://x","click")',
        "+1+1",
        "-2+3",
        "@SUM(A1:A2)",
        "\tTabbed",
        "\rCarriage",
        'comma, "quotes" and\nnewline',
        "Zoë, naïve café",
    ]
    for i, note in enumerate(nasty):
        case = make_case(neonate=neonate, model=model, age_minutes=60 - i)
        scorer = UserFactory(username=f"n{i}", unit=nurse.unit)
        assessment = services.assessment_create(case=case, nurse=scorer, items=SCORES)
        # Written directly: the service trims notes, but rows from elsewhere (admin, imports) may not be.
        NipsAssessment.objects.filter(pk=assessment.pk).update(note=note)
    _, body = download(client_for(nurse))
    notes = [row["note"] for row in rows_of(body)]
    assert notes == [
        '\'=HYPERLINK("http://x","click")',
        "'+1+1",
        "'-2+3",
        "'@SUM(A1:A2)",
        "'\tTabbed",
        "'\rCarriage",
        'comma, "quotes" and\nnewline',
        "Zoë, naïve café",
    ]
    assert neutralise("-0.5") == "'-0.5" and neutralise("plain") == "plain" and neutralise("") == ""


def test_an_mrn_starting_with_a_formula_character_is_neutralised(client_for, nurse, unit, model):
    from tests.factories import NeonateFactory

    evil = NeonateFactory(mrn="=cmd|' /C calc'!A0", bed="1", unit=unit)
    case = make_case(neonate=evil, model=model)
    services.assessment_create(case=case, nurse=nurse, items=SCORES)
    _, body = download(client_for(nurse))
    assert rows_of(body)[0]["neonate_mrn"] == "'=cmd|' /C calc'!A0"


def test_bom_is_opt_in_for_excel(client_for, nurse):
    _, plain = download(client_for(nurse))
    _, excel = download(client_for(nurse), "?bom=1")
    assert not plain.startswith("\ufeff") and excel.startswith("\ufeff" + "assessment_id,")


def test_filters_unit_dates_and_neonate(client_for, nurse, second_nurse, neonate, model, unit):
    from tests.factories import NeonateFactory

    other_baby = NeonateFactory(mrn="MRN-N-002", bed="5", unit=unit)
    old = services.assessment_create(case=make_case(neonate=neonate, model=model), nurse=nurse, items=SCORES)
    type(old).objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    recent = services.assessment_create(case=make_case(neonate=neonate, model=model), nurse=nurse, items=SCORES)
    other = services.assessment_create(
        case=make_case(neonate=other_baby, model=model), nurse=second_nurse, items=SCORES
    )
    client = client_for(nurse)
    today = timezone.localdate().isoformat()

    def ids(query: str) -> list[int]:
        return [int(r["assessment_id"]) for r in rows_of(download(client, query)[1])]

    assert ids("") == [old.pk, recent.pk, other.pk]
    assert ids(f"?date_from={today}") == [recent.pk, other.pk]
    assert ids(f"?date_to={(timezone.localdate() - timedelta(days=5)).isoformat()}") == [old.pk]
    assert ids("?neonate=MRN-N-002") == [other.pk]
    assert ids("?unit=north&date_from=&neonate=") == [old.pk, recent.pk, other.pk]
    assert download(client, "?date_from=2025-13-01")[0].status_code == 400
    assert download(client, "?date_from=2025-02-02&date_to=2025-02-01")[0].status_code == 400


def test_a_nurse_cannot_export_another_unit(client_for, nurse, other_nurse, other_neonate, model):
    services.assessment_create(case=make_case(neonate=other_neonate, model=model), nurse=other_nurse, items=SCORES)
    response, _ = download(client_for(nurse), "?unit=south")
    assert response.status_code == 403
    _, own = download(client_for(nurse))
    assert rows_of(own) == []


def test_superuser_exports_every_unit(client_for, superuser, nurse, other_nurse, neonate, other_neonate, model):
    services.assessment_create(case=make_case(neonate=neonate, model=model), nurse=nurse, items=SCORES)
    services.assessment_create(case=make_case(neonate=other_neonate, model=model), nurse=other_nurse, items=SCORES)
    _, body = download(client_for(superuser))
    assert {r["neonate_mrn"] for r in rows_of(body)} == {"MRN-N-001", "MRN-S-001"}
    _, south = download(client_for(superuser), "?unit=south")
    assert {r["neonate_mrn"] for r in rows_of(south)} == {"MRN-S-001"}


def test_each_export_is_audited_with_filters_and_row_count(client_for, nurse, case):
    services.assessment_create(case=case, nurse=nurse, items=SCORES)
    download(client_for(nurse), "?neonate=MRN-N-001&date_from=2020-01-01")
    event = AuditEvent.objects.get(action="assessments.exported")
    assert event.actor == nurse and event.unit == nurse.unit
    assert event.after["row_count"] == 1
    assert event.after["filters"] == {
        "unit": "north",
        "date_from": "2020-01-01",
        "date_to": None,
        "neonate": "MRN-N-001",
    }


def test_unable_to_assess_rows_have_blank_scores_and_the_reason(client_for, nurse, case):
    services.assessment_create(case=case, nurse=nurse, items={}, unable_reason="Face covered")
    [row] = rows_of(download(client_for(nurse))[1])
    assert row["nips_total"] == "" and row["pain"] == "" and row["face"] == ""
    assert row["note"] == "Unable to assess: Face covered"


def test_export_accepts_text_csv_accept_header(client_for, nurse):
    response = client_for(nurse).get("/api/v1/assessments/export.csv", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
