"""Device health (issue 17, item 2): the agent's heartbeat, the unit admin's cameras page, and the
offline-camera warning on the queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bedside import __version__
from tests.factories import DeviceFactory, UserFactory
from triage.models import AuditEvent, Device, Role, UnitSettings

pytestmark = pytest.mark.django_db


def beat(client, **body):
    return client.post(
        "/api/v1/devices/heartbeat/", {"agent_version": __version__, "spool_backlog": 3, **body}, format="json"
    )


def test_a_heartbeat_records_version_backlog_contact_and_the_watched_neonate(client_for, device, neonate):
    response = beat(client_for(device.user), neonate=neonate.mrn)

    assert response.status_code == 200, response.json()
    assert response.json()["neonate"] == neonate.mrn and response.json()["spool_backlog"] == 3
    device.refresh_from_db()
    assert (device.agent_version, device.spool_backlog, device.neonate) == (__version__, 3, neonate)
    assert timezone.now() - device.last_seen_at < timedelta(seconds=5)
    assigned = AuditEvent.objects.get(action="device.assigned")
    assert assigned.after == {"neonate": neonate.mrn} and assigned.actor == device.user

    beat(client_for(device.user), neonate=neonate.mrn, spool_backlog=0)
    assert AuditEvent.objects.filter(action="device.assigned").count() == 1, "only a change of assignment is audited"


def test_a_heartbeat_for_a_neonate_of_another_unit_is_refused(client_for, device, other_neonate):
    response = beat(client_for(device.user), neonate=other_neonate.mrn)

    assert response.status_code == 400 and "neonate" in response.json()
    device.refresh_from_db()
    assert device.neonate is None and device.last_seen_at is None


@pytest.mark.parametrize("body", [{"spool_backlog": -1}, {"spool_backlog": "many"}, {"agent_version": ""}])
def test_a_malformed_heartbeat_is_a_clear_400(client_for, device, body):
    assert beat(client_for(device.user), **body).status_code == 400


def test_only_a_camera_sends_heartbeats(client_for, nurse):
    assert beat(client_for(nurse)).status_code == 403


def _camera(unit, name, *, seen_minutes_ago, neonate=None):
    camera = DeviceFactory(name=name, unit=unit, user=UserFactory(role=Role.DEVICE, unit=unit), neonate=neonate)
    if seen_minutes_ago is not None:
        Device.objects.filter(pk=camera.pk).update(last_seen_at=timezone.now() - timedelta(minutes=seen_minutes_ago))
    return camera


def test_the_cameras_page_shows_contact_backlog_and_offline_after_the_unit_silence(
    browser_for, unit_admin, unit, neonate
):
    _camera(unit, "cam-online", seen_minutes_ago=1, neonate=neonate)
    _camera(unit, "cam-silent", seen_minutes_ago=3)
    Device.objects.filter(name="cam-online").update(spool_backlog=17, agent_version="0.1.0")

    page = browser_for(unit_admin).get("/unit/devices/").content.decode()

    online, silent = page.split("cam-online")[1].split("</tr>")[0], page.split("cam-silent")[1].split("</tr>")[0]
    assert "online" in online and ">17<" in online and "0.1.0" in online and neonate.mrn in online
    assert "offline" in silent and "no baby" in silent
    assert "more than <strong>2 minutes</strong>" in page

    UnitSettings.objects.filter(unit=unit).update(device_offline_minutes=5)
    page = browser_for(unit_admin).get("/unit/devices/").content.decode()
    assert "offline" not in page.split("cam-silent")[1].split("</tr>")[0]


def test_the_cameras_page_is_for_the_unit_admin(browser_for, nurse):
    assert browser_for(nurse).get("/unit/devices/").status_code == 403


def test_an_offline_camera_watching_a_baby_is_a_warning_on_the_queue(browser_for, nurse, unit, neonate):
    _camera(unit, "cam-unassigned", seen_minutes_ago=None)  # offline but watching nobody: listed, no warning
    watching = _camera(unit, "cam-bed-3", seen_minutes_ago=1, neonate=neonate)

    page = browser_for(nurse).get("/").content.decode()
    assert "Camera offline" not in page and "cam-unassigned" in page

    Device.objects.filter(pk=watching.pk).update(last_seen_at=timezone.now() - timedelta(minutes=10))
    page = browser_for(nurse).get("/").content.decode()
    warning = page.split("Camera offline:")[1].split("</p>")[0]
    assert "cam-bed-3" in warning and neonate.mrn in warning and "not being monitored" in warning
    assert page.count("Camera offline:") == 1


def test_the_offline_silence_is_an_audited_unit_setting(client_for, unit_admin, unit):
    response = client_for(unit_admin).patch(f"/api/v1/units/{unit.pk}/", {"device_offline_minutes": 5}, format="json")

    assert response.status_code == 200 and response.json()["settings"]["device_offline_minutes"] == 5
    event = AuditEvent.objects.get(action="unit_settings.updated")
    assert event.before == {"device_offline_minutes": 2} and event.after == {"device_offline_minutes": 5}
    bad = client_for(unit_admin).patch(f"/api/v1/units/{unit.pk}/", {"device_offline_minutes": 0}, format="json")
    assert bad.status_code == 400
