"""API credentials (issue 18, item 3): hashed tokens that expire and can be revoked, the unit admin's
camera-token page, the legacy DRF token migration, and the per-account sign-in lockout."""

from __future__ import annotations

import hashlib
import importlib
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import TEST_PASSWORD, UserFactory, api_token_for
from triage import services
from triage.models import ApiToken, AuditEvent, Role

pytestmark = pytest.mark.django_db

FRAMES = "/api/v1/frames/"


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


# --- expiry, revocation, rotation ------------------------------------------------------------------


def test_a_token_is_stored_hashed_and_shown_only_at_creation(device):
    issued = services.api_token_create(user=device.user)

    row = ApiToken.objects.get(pk=issued.token.pk)
    assert row.digest == hashlib.sha256(issued.key.encode()).hexdigest()
    assert issued.key not in str(ApiToken.objects.filter(pk=row.pk).values().get())
    assert api(issued.key).get(FRAMES).status_code == 200


def test_an_expired_token_answers_401_saying_it_expired(device):
    key = api_token_for(device.user, expires_in=timedelta(seconds=-1))

    response = api(key).get(FRAMES)

    assert response.status_code == 401
    assert response.json()["detail"].startswith("Token expired at ")


def test_a_revoked_token_answers_401_saying_it_was_revoked(device, unit_admin):
    issued = services.api_token_create(user=device.user)
    assert api(issued.key).get(FRAMES).status_code == 200

    services.api_token_revoke(token=issued.token, actor=unit_admin)

    response = api(issued.key).get(FRAMES)
    assert response.status_code == 401 and response.json()["detail"].startswith("Token revoked at ")
    event = AuditEvent.objects.get(action="token.revoked")
    assert (event.actor, event.unit, event.after["prefix"]) == (unit_admin, device.unit, issued.token.prefix)
    assert issued.key not in str(event.before) + str(event.after)


def test_rotation_replaces_every_live_key_with_one_new_one(device, unit_admin):
    first, second = services.api_token_create(user=device.user), services.api_token_create(user=device.user)

    rotated = services.api_token_rotate(user=device.user, actor=unit_admin)

    for old in (first, second):
        response = api(old.key).get(FRAMES)
        assert response.status_code == 401 and "replaced by a newer token" in response.json()["detail"]
    assert api(rotated.key).get(FRAMES).status_code == 200
    assert AuditEvent.objects.filter(action="token.rotated").count() == 2


def test_an_unknown_or_forged_key_answers_401_invalid(device):
    key = api_token_for(device.user)
    forged = key[:12] + "x" * (len(key) - 12)  # right prefix, wrong secret

    for bad in (forged, "0" * 40, "short"):
        response = api(bad).get(FRAMES)
        assert response.status_code == 401 and response.json()["detail"] == "Invalid token: no such API token."


def test_lifetimes_are_a_year_for_cameras_and_a_shift_for_people_and_the_unit_admin_sets_them(
    device, nurse, unit_admin
):
    now = timezone.now()
    camera = services.api_token_create(user=device.user).token
    person = services.api_token_create(user=nurse).token
    assert timedelta(days=364) < camera.expires_at - now <= timedelta(days=365, seconds=5)
    assert timedelta(hours=11) < person.expires_at - now <= timedelta(hours=12, seconds=5)

    services.unit_settings_update(
        unit=nurse.unit, actor=unit_admin, changes={"device_token_days": 30, "person_token_hours": 2}
    )

    assert services.api_token_create(user=device.user).token.expires_at - now <= timedelta(days=30, seconds=5)
    assert services.api_token_create(user=nurse).token.expires_at - now <= timedelta(hours=2, seconds=5)


def test_only_the_cameras_own_unit_admin_manages_its_tokens(device, unit_admin, other_unit_admin, nurse):
    from django.core.exceptions import PermissionDenied

    for actor in (other_unit_admin, nurse):
        with pytest.raises(PermissionDenied):
            services.api_token_create(user=device.user, actor=actor)
    with pytest.raises(PermissionDenied):  # a unit admin manages cameras, not people's tokens
        services.api_token_create(user=nurse, actor=unit_admin)
    assert services.api_token_create(user=device.user, actor=unit_admin).token.created_by == unit_admin


# --- the devices page -----------------------------------------------------------------------------


def test_the_devices_page_lists_creates_rotates_and_revokes_camera_tokens(browser_for, unit_admin, device):
    browser = browser_for(unit_admin)
    old = services.api_token_create(user=device.user)
    api(old.key).get(FRAMES)  # sets last used

    page = browser.get("/unit/devices/").content.decode()
    assert old.token.prefix in page and old.key not in page and "Revoke" in page

    created = browser.post(f"/unit/devices/{device.pk}/tokens/new")
    new_key = ApiToken.objects.filter(user=device.user).exclude(pk=old.token.pk).get()
    body = created.content.decode()
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    shown = body.split("data-token-key>")[1].split("<")[0]
    assert shown.startswith(new_key.prefix) and api(shown).get(FRAMES).status_code == 200
    assert shown not in browser.get("/unit/devices/").content.decode()  # shown once

    rotated = browser.post(f"/unit/devices/{device.pk}/tokens/rotate").content.decode()
    latest = rotated.split("data-token-key>")[1].split("<")[0]
    assert api(shown).get(FRAMES).status_code == 401 and api(old.key).get(FRAMES).status_code == 401
    assert api(latest).get(FRAMES).status_code == 200

    live = ApiToken.objects.get(user=device.user, revoked_at__isnull=True)
    revoked = browser.post(f"/unit/tokens/{live.pk}/revoke", follow=True)
    assert "revoked. It no longer works." in revoked.content.decode()
    assert api(latest).get(FRAMES).status_code == 401
    actions = list(AuditEvent.objects.filter(object_type="triage.ApiToken").values_list("action", flat=True))
    assert sorted(set(actions)) == ["token.created", "token.revoked", "token.rotated"]
    assert all(
        e.actor == unit_admin for e in AuditEvent.objects.filter(object_type="triage.ApiToken").exclude(actor=None)
    )


def test_another_units_admin_gets_404_for_the_camera_and_its_tokens(browser_for, other_unit_admin, device):
    issued = services.api_token_create(user=device.user)
    browser = browser_for(other_unit_admin)

    assert browser.post(f"/unit/devices/{device.pk}/tokens/new").status_code == 404
    assert browser.post(f"/unit/devices/{device.pk}/tokens/rotate").status_code == 404
    assert browser.post(f"/unit/tokens/{issued.token.pk}/revoke").status_code == 404
    assert issued.token.prefix not in browser.get("/unit/devices/").content.decode()
    assert ApiToken.objects.filter(user=device.user).count() == 1 and api(issued.key).get(FRAMES).status_code == 200


# --- the migration of DRF's clear-text tokens ------------------------------------------------------


def test_legacy_drf_tokens_are_hashed_keep_working_and_their_table_is_dropped(device, nurse):
    migration = importlib.import_module("triage.migrations.0014_h18c_hash_drf_tokens")
    camera_key, nurse_key = "a" * 40, "b1" * 20
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp, user_id int)")
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s), (%s, %s, %s)",
            [camera_key, timezone.now(), device.user.pk, nurse_key, timezone.now(), nurse.pk],
        )
    from django.apps import apps

    class Editor:  # what the migration uses of a schema editor (SQLite's cannot open inside a test's transaction)
        connection = connection

        @staticmethod
        def execute(sql):
            with connection.cursor() as cursor:
                cursor.execute(sql)

    migration.hash_legacy_tokens(apps, Editor())

    assert "authtoken_token" not in connection.introspection.table_names()
    assert api(camera_key).get(FRAMES).status_code == 200 and api(nurse_key).get(FRAMES).status_code == 200
    camera, person = ApiToken.objects.get(user=device.user), ApiToken.objects.get(user=nurse)
    assert (camera.kind, person.kind) == ("device", "person")
    assert camera.expires_at - timezone.now() > timedelta(days=364)
    assert person.expires_at - timezone.now() <= timedelta(hours=12)
    assert camera_key not in camera.digest + camera.prefix[12:]


# --- sign-in: per-account lockout ------------------------------------------------------------------


def test_an_account_guessed_from_many_addresses_is_locked_out_and_audited(settings, monkeypatch):
    import triage.auth as auth

    settings.NEOPAIN_LOGIN_ACCOUNT_FAILURE_LIMIT = 4
    settings.NEOPAIN_LOGIN_ACCOUNT_LOCKOUT_SECONDS = 600
    now = [3_000_000.0]
    monkeypatch.setattr(auth, "_now", lambda: now[0])
    nurse = UserFactory(username=f"n-{uuid.uuid4().hex[:8]}", role=Role.NURSE)
    for i in range(4):  # one failure per address: the per-address throttle never triggers
        Client(REMOTE_ADDR=f"192.0.2.{i + 10}").post("/login/", {"username": nurse.username, "password": "guess"})

    ward = Client(REMOTE_ADDR="198.51.100.20")
    locked = ward.post("/login/", {"username": nurse.username, "password": TEST_PASSWORD})

    assert locked.status_code == 429 and int(locked["Retry-After"]) == 600
    page = locked.content.decode()
    assert "Too many failed sign-in attempts" in page and "about 10 minutes" in page and "<html" in page
    assert "_auth_user_id" not in ward.session
    event = AuditEvent.objects.get(action="login.locked_out")
    assert event.actor_username == nurse.username and event.after == {"scopes": ["account"], "seconds": 600}
    assert AuditEvent.objects.filter(action="login.throttled", actor_username=nurse.username).count() == 1

    now[0] += 601
    assert ward.post("/login/", {"username": nurse.username, "password": TEST_PASSWORD}).status_code == 302


def test_the_address_throttle_lock_is_audited_as_a_lockout_too(settings):
    settings.NEOPAIN_LOGIN_FAILURE_LIMIT = 2
    nurse = UserFactory(username=f"n-{uuid.uuid4().hex[:8]}", role=Role.NURSE)
    client = Client(REMOTE_ADDR="192.0.2.99")
    for _ in range(2):
        client.post("/login/", {"username": nurse.username, "password": "guess"})

    event = AuditEvent.objects.get(action="login.locked_out")
    assert event.after["scopes"] == ["address+user"] and event.ip == "192.0.2.99"


def test_the_devices_page_flags_a_camera_token_that_expires_within_30_days(browser_for, unit_admin, device):
    api_token_for(device.user, expires_in=timedelta(days=10, hours=1))
    api_token_for(device.user, expires_in=timedelta(days=200))

    page = browser_for(unit_admin).get("/unit/devices/").content.decode()

    assert page.count("expires in 10 days") == 1 and "token-expiring" in page


def test_the_unit_admin_sets_token_lifetimes_on_the_settings_page_audited(browser_for, unit_admin, device):
    from triage.models import UnitSettings

    form = {
        "threshold": "0.55",
        "nips_pain_threshold": "3",
        "alert_cooldown_minutes": "10",
        "claim_timeout_minutes": "15",
        "double_scoring_share": "0",
        "missed_pain_target": "",
        "device_offline_minutes": "2",
        "alert_rule_k": "2",
        "alert_rule_n": "3",
        "alert_rule_window_seconds": "60",
        "device_token_days": "90",
        "person_token_hours": "8",
    }
    page = browser_for(unit_admin).get("/unit/settings/").content.decode()
    assert "Camera token lifetime (days)" in page and 'name="person_token_hours"' in page

    response = browser_for(unit_admin).post("/unit/settings/", form)

    assert response.status_code == 302, response.content[:500]
    row = UnitSettings.objects.get(unit=unit_admin.unit)
    assert (row.device_token_days, row.person_token_hours) == (90, 8)
    event = AuditEvent.objects.get(action="unit_settings.updated")
    assert event.after == {"device_token_days": 90, "person_token_hours": 8}
    issued = services.api_token_create(user=device.user)
    assert timedelta(days=89) < issued.token.expires_at - timezone.now() <= timedelta(days=90, seconds=5)
