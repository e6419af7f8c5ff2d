"""/api/v1/units/ (settings, audited PATCH) and /api/v1/neonates/."""

from __future__ import annotations

import pytest

from tests.factories import NeonateFactory, UnitFactory
from triage.models import AuditEvent, Neonate, UnitSettings

pytestmark = pytest.mark.django_db


def test_a_nurse_sees_her_unit_with_its_settings(client_for, nurse, unit, other_unit):
    body = client_for(nurse).get("/api/v1/units/").json()

    assert body["count"] == 1
    (row,) = body["results"]
    assert (row["id"], row["code"], row["name"]) == (unit.pk, "north", "NICU North")
    assert row["settings"]["threshold"] == pytest.approx(0.55)
    assert row["settings"]["nips_rule"] == "total>=3"


def test_an_ml_engineer_sees_every_unit(client_for, ml_engineer, unit, other_unit):
    body = client_for(ml_engineer).get("/api/v1/units/").json()

    assert {row["code"] for row in body["results"]} == {"north", "south"}


def test_the_unit_admin_changes_the_threshold_and_it_is_audited(client_for, unit_admin, unit):
    response = client_for(unit_admin).patch(f"/api/v1/units/{unit.pk}/", {"threshold": 0.7}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["settings"]["threshold"] == pytest.approx(0.7)
    assert UnitSettings.objects.get(unit=unit).threshold == pytest.approx(0.7)
    event = AuditEvent.objects.get(action="unit_settings.updated")
    assert event.actor == unit_admin and event.unit == unit
    assert event.before == {"threshold": 0.55} and event.after == {"threshold": 0.7}


def test_the_patch_accepts_a_nested_settings_object(client_for, unit_admin, unit):
    response = client_for(unit_admin).patch(
        f"/api/v1/units/{unit.pk}/",
        {"settings": {"alert_cooldown_minutes": 5, "double_scoring_share": 0.2}},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["settings"]["alert_cooldown_minutes"] == 5
    assert response.json()["settings"]["double_scoring_share"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"threshold": 0.4}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"nips_pain_threshold": 0}, "nips_pain_threshold"),
        ({"double_scoring_share": 2}, "double_scoring_share"),
        ({"name": "Renamed"}, "name"),
    ],
)
def test_it_refuses_bad_settings_with_field_errors(client_for, unit_admin, unit, payload, field):
    response = client_for(unit_admin).patch(f"/api/v1/units/{unit.pk}/", payload, format="json")

    assert response.status_code == 400
    body = response.json()
    assert field in body and body["detail"].startswith(f"{field}:")
    assert UnitSettings.objects.get(unit=unit).threshold == pytest.approx(0.55)
    assert not AuditEvent.objects.filter(action="unit_settings.updated").exists()


def test_an_empty_patch_is_refused(client_for, unit_admin, unit):
    response = client_for(unit_admin).patch(f"/api/v1/units/{unit.pk}/", {}, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] == "Give at least one setting to change."


def test_a_unit_admin_cannot_touch_another_unit(client_for, other_unit_admin, unit):
    response = client_for(other_unit_admin).patch(f"/api/v1/units/{unit.pk}/", {"threshold": 0.9}, format="json")

    assert response.status_code == 404
    assert UnitSettings.objects.get(unit=unit).threshold == pytest.approx(0.55)


def test_a_nurse_cannot_change_settings(client_for, nurse, unit):
    response = client_for(nurse).patch(f"/api/v1/units/{unit.pk}/", {"threshold": 0.9}, format="json")

    assert response.status_code == 403
    assert response.json()["detail"] == "Only a unit admin may do this."


def test_a_nurse_registers_a_neonate_in_her_unit(client_for, nurse, unit):
    response = client_for(nurse).post(
        "/api/v1/neonates/", {"mrn": "NEW-1", "bed": "12", "gestational_age_weeks": "31.5"}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["mrn"] == "NEW-1" and body["unit"] == "north" and body["gestational_age_weeks"] == "31.5"
    assert Neonate.objects.get(mrn="NEW-1").unit == unit
    assert AuditEvent.objects.filter(action="neonate.created", actor=nurse).exists()


def test_a_nurse_cannot_place_a_neonate_in_another_unit(client_for, nurse, unit, other_unit):
    response = client_for(nurse).post("/api/v1/neonates/", {"mrn": "NEW-2", "unit": "south"}, format="json")

    assert response.status_code == 201
    assert Neonate.objects.get(mrn="NEW-2").unit == unit


def test_a_duplicate_mrn_in_the_same_unit_is_refused(client_for, nurse, neonate):
    response = client_for(nurse).post("/api/v1/neonates/", {"mrn": neonate.mrn}, format="json")

    assert response.status_code == 400
    assert response.json()["mrn"] == ["A neonate with this MRN is already registered in your unit."]


@pytest.mark.parametrize("payload", [{}, {"mrn": ""}, {"mrn": "X", "gestational_age_weeks": 12}])
def test_it_validates_the_neonate(client_for, nurse, payload):
    response = client_for(nurse).post("/api/v1/neonates/", payload, format="json")

    assert response.status_code == 400
    assert "detail" in response.json()


def test_the_neonate_list_is_scoped_and_hides_discharged(client_for, nurse, unit, other_unit):
    NeonateFactory(mrn="A", unit=unit)
    NeonateFactory(mrn="B", unit=unit, active=False)
    NeonateFactory(mrn="C", unit=other_unit)

    body = client_for(nurse).get("/api/v1/neonates/").json()
    everyone = client_for(nurse).get("/api/v1/neonates/", {"include_inactive": "1"}).json()

    assert [n["mrn"] for n in body["results"]] == ["A"]
    assert {n["mrn"] for n in everyone["results"]} == {"A", "B"}


def test_a_superuser_registers_a_neonate_in_a_named_unit(client_for, superuser, other_unit):
    response = client_for(superuser).post("/api/v1/neonates/", {"mrn": "S-1", "unit": "south"}, format="json")

    assert response.status_code == 201
    assert Neonate.objects.get(mrn="S-1").unit == other_unit


def test_a_unit_without_settings_gets_the_papers_defaults(client_for, superuser):
    bare = UnitFactory(code="bare")
    UnitSettings.objects.filter(unit=bare).delete()

    body = client_for(superuser).get(f"/api/v1/units/{bare.pk}/").json()

    assert body["settings"]["threshold"] == pytest.approx(0.55)
