"""Unit-admin pages without the Django admin (issue 13, item 7): people, admissions, cameras; audited, unit-scoped."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from tests.factories import TEST_PASSWORD, DeviceFactory, NeonateFactory, UserFactory
from triage.models import AuditEvent, Neonate, Role, User
from triage.services.devices import device_assign
from triage.services.neonates import neonate_admit, neonate_discharge
from triage.services.people import person_active_set, person_create, person_role_set

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "Lullaby-cot-47"


def html(response) -> str:
    return response.content.decode()


# --- services ---------------------------------------------------------------------------


def test_a_unit_admin_adds_a_nurse_who_can_sign_in(client, unit, unit_admin):
    nurse = person_create(
        unit=unit, actor=unit_admin, username="nadia", password=GOOD_PASSWORD, first_name="Nadia", role=Role.NURSE
    )
    assert nurse.unit == unit and nurse.role == Role.NURSE and nurse.is_active
    assert client.login(username="nadia", password=GOOD_PASSWORD)
    event = AuditEvent.objects.get(action="user.created")
    assert event.actor_username == "adam" and event.after["role"] == "nurse" and event.unit_id == unit.pk


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"password": "123"}, "password"), ({"username": "alice"}, "username"), ({"role": Role.ML_ENGINEER}, "role")],
)
def test_adding_a_person_refuses_weak_passwords_taken_names_and_other_roles(unit, unit_admin, nurse, changes, field):
    kwargs = {"unit": unit, "actor": unit_admin, "username": "nadia", "password": GOOD_PASSWORD, **changes}
    with pytest.raises(ValidationError) as exc:
        person_create(**kwargs)
    assert field in exc.value.message_dict
    assert not AuditEvent.objects.filter(action="user.created").exists()


def test_a_deactivated_nurse_cannot_sign_in_and_is_audited(client, unit_admin, nurse):
    person_active_set(person=nurse, active=False, actor=unit_admin)
    assert not client.login(username="alice", password=TEST_PASSWORD)
    assert AuditEvent.objects.get(action="user.deactivated").object_id == str(nurse.pk)
    person_active_set(person=nurse, active=True, actor=unit_admin)
    assert client.login(username="alice", password=TEST_PASSWORD)


def test_roles_change_audited_but_never_ones_own_or_another_units(unit_admin, nurse, other_nurse, ml_engineer):
    person_role_set(person=nurse, role=Role.UNIT_ADMIN, actor=unit_admin)
    nurse.refresh_from_db()
    assert nurse.role == Role.UNIT_ADMIN
    event = AuditEvent.objects.get(action="user.role_changed")
    assert (event.before, event.after) == ({"role": "nurse"}, {"role": "unit_admin"})
    with pytest.raises(ValidationError):
        person_role_set(person=unit_admin, role=Role.NURSE, actor=unit_admin)
    with pytest.raises(ValidationError):
        person_active_set(person=unit_admin, active=False, actor=unit_admin)
    with pytest.raises(PermissionDenied):
        person_active_set(person=other_nurse, active=False, actor=unit_admin)
    with pytest.raises(PermissionDenied):
        person_active_set(person=ml_engineer, active=False, actor=unit_admin)


def test_discharge_frees_the_camera_and_readmission_keeps_the_history(unit, unit_admin, device):
    baby = neonate_admit(unit=unit, mrn="MRN-77", bed="7", gestational_age_weeks=31, actor=unit_admin)
    device_assign(device=device, neonate=baby, actor=unit_admin)

    neonate_discharge(neonate=baby, actor=unit_admin)

    baby.refresh_from_db()
    device.refresh_from_db()
    assert not baby.active and baby.discharged_at is not None and device.neonate is None
    again = neonate_admit(unit=unit, mrn="MRN-77", bed="12", actor=unit_admin)
    assert again.pk == baby.pk and again.active and again.bed == "12" and again.discharged_at is None
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == [
        "neonate.created",
        "device.assigned",
        "device.assigned",
        "neonate.discharged",
        "neonate.readmitted",
    ]
    with pytest.raises(ValidationError):
        neonate_admit(unit=unit, mrn="MRN-77", bed="3", actor=unit_admin)


def test_a_camera_is_assigned_only_to_an_admitted_baby_of_its_unit(unit, unit_admin, device, other_neonate):
    gone = NeonateFactory(unit=unit, active=False)
    for baby in (other_neonate, gone):
        with pytest.raises(ValidationError):
            device_assign(device=device, neonate=baby, actor=unit_admin)
    assert not AuditEvent.objects.filter(action="device.assigned").exists()


# --- pages ------------------------------------------------------------------------------


def test_the_people_page_adds_changes_and_deactivates(browser_for, unit_admin, nurse, other_nurse):
    client = browser_for(unit_admin)
    page = html(client.get("/unit/people/"))
    assert "alice" in page and "olga" not in page  # another unit's staff is not listed

    response = client.post(
        "/unit/people/", {"username": "nadia", "first_name": "Nadia", "role": "nurse", "password": GOOD_PASSWORD}
    )
    assert response.status_code == 302
    nadia = User.objects.get(username="nadia")
    client.post(f"/unit/people/{nadia.pk}/", {"action": "role", "role": "unit_admin"})
    client.post(f"/unit/people/{nurse.pk}/", {"action": "deactivate"})
    nadia.refresh_from_db()
    nurse.refresh_from_db()
    assert nadia.role == Role.UNIT_ADMIN and nadia.unit_id == unit_admin.unit_id and not nurse.is_active
    assert client.post(f"/unit/people/{other_nurse.pk}/", {"action": "deactivate"}).status_code == 404
    other_nurse.refresh_from_db()
    assert other_nurse.is_active


def test_the_people_page_shows_form_errors_and_keeps_input(browser_for, unit_admin):
    response = browser_for(unit_admin).post("/unit/people/", {"username": "nadia", "role": "nurse", "password": "1"})
    assert response.status_code == 400
    page = html(response)
    assert 'value="nadia"' in page and "field-error" in page


def test_the_admissions_page_admits_and_discharges(browser_for, unit_admin, other_neonate):
    client = browser_for(unit_admin)
    response = client.post("/unit/babies/", {"mrn": "MRN-9", "bed": "9", "gestational_age_weeks": "29.5"})
    assert response.status_code == 302
    baby = Neonate.objects.get(mrn="MRN-9")
    assert baby.bed == "9" and float(baby.gestational_age_weeks) == 29.5 and baby.unit_id == unit_admin.unit_id
    page = html(client.get("/unit/babies/"))
    assert "MRN-9" in page and "29.5 wk" in page and other_neonate.mrn not in page
    assert client.post(f"/unit/babies/{other_neonate.pk}/discharge/").status_code == 404
    client.post(f"/unit/babies/{baby.pk}/discharge/")
    baby.refresh_from_db()
    assert not baby.active
    assert "Recently discharged" in html(client.get("/unit/babies/"))


def test_the_cameras_page_assigns_a_camera_to_a_bed(browser_for, unit_admin, device, neonate, other_unit):
    client = browser_for(unit_admin)
    page = html(client.get("/unit/devices/"))
    assert f"bed {neonate.bed} · {neonate.mrn}" in page and "Assign" in page

    client.post(f"/unit/devices/{device.pk}/assign/", {"neonate": str(neonate.pk)})
    device.refresh_from_db()
    assert device.neonate == neonate
    client.post(f"/unit/devices/{device.pk}/assign/", {"neonate": ""})
    device.refresh_from_db()
    assert device.neonate is None
    foreign = DeviceFactory(unit=other_unit)
    assert client.post(f"/unit/devices/{foreign.pk}/assign/", {"neonate": ""}).status_code == 404


@pytest.mark.parametrize("path", ["/unit/people/", "/unit/babies/", "/unit/devices/"])
def test_nurses_and_ml_engineers_are_refused_the_admin_pages(browser_for, nurse, ml_engineer, path):
    assert browser_for(nurse).get(path).status_code == 403
    assert browser_for(ml_engineer).get(path).status_code == 403
    assert browser_for(None).get(path).status_code == 302


def test_a_signed_in_unit_admin_never_gets_a_second_sign_in_form(browser_for, unit_admin):
    unit_admin.is_staff = True
    unit_admin.save(update_fields=["is_staff"])
    client = browser_for(unit_admin)
    for path in ("/django-admin/", "/django-admin/login/?next=/django-admin/"):
        response = client.get(path, follow=True)
        assert response.status_code == 403 and b'name="password"' not in response.content
        assert b"Unit menu" in response.content or b"unit pages" in response.content
    assert b"Django admin" not in client.get("/unit/people/").content


def test_the_django_admin_link_is_for_superusers_only(browser_for):
    root = UserFactory(username="root", role=Role.UNIT_ADMIN, unit=None, is_superuser=True, is_staff=True)
    assert b"Django admin" in browser_for(root).get("/unit/people/").content
