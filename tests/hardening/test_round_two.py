"""Issue 16, security round two: what a red-team pass broke, each with a test that failed before the fix.

Item numbers follow the issue (and docs/security.md, lines 23-40).
"""

from __future__ import annotations

import io
import re
import secrets
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client

from tests.factories import TEST_PASSWORD, UserFactory, png_bytes
from triage.models import AuditEvent, Role, User

pytestmark = pytest.mark.django_db

ROOT = Path(django_settings.BASE_DIR)


def _fresh_address() -> str:
    """A client address of our own: sign-in counters in a shared cache never meet another test's."""
    return f"10.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"


# --- 1. the Django admin is for superusers only ------------------------------------------------------


@pytest.fixture
def staff_unit_admin(unit_admin):
    unit_admin.is_staff = True
    unit_admin.save(update_fields=["is_staff"])
    return unit_admin


@pytest.mark.parametrize(
    "path", ["/django-admin/", "/django-admin/triage/neonate/", "/django-admin/triage/auditevent/", "/django-admin/triage/user/"]
)
def test_a_unit_admin_with_is_staff_does_not_reach_the_django_admin(browser_for, staff_unit_admin, other_neonate, path):
    response = browser_for(staff_unit_admin).get(path)

    # Signed in already: a 403 that says where to go, never the admin's second sign-in form (issue 13).
    assert response.status_code == 403 and b'name="password"' not in response.content
    assert b"superusers" in response.content
    assert other_neonate.mrn.encode() not in response.content


def test_a_unit_admin_cannot_make_themselves_superuser_through_the_admin(browser_for, staff_unit_admin, unit):
    form = {
        "username": staff_unit_admin.username,
        "role": Role.UNIT_ADMIN,
        "unit": unit.pk,
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }

    browser_for(staff_unit_admin).post(f"/django-admin/triage/user/{staff_unit_admin.pk}/change/", form)

    staff_unit_admin.refresh_from_db()
    assert not staff_unit_admin.is_superuser


def test_a_superuser_still_has_the_admin(browser_for, db):
    root = UserFactory(username=f"root-{uuid.uuid4().hex[:6]}", is_superuser=True, is_staff=True)

    assert browser_for(root).get("/django-admin/triage/neonate/").status_code == 200


def test_the_admin_never_offers_privilege_fields_to_a_non_superuser(rf, staff_unit_admin):
    from django.contrib import admin

    request = rf.get("/")
    request.user = staff_unit_admin

    readonly = admin.site._registry[User].get_readonly_fields(request, staff_unit_admin)

    assert {"is_staff", "is_superuser", "groups", "user_permissions"} <= set(readonly)


# --- 3. the app's database role cannot rewrite the audit log -----------------------------------------


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="database roles and privileges are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_the_app_role_cannot_disable_the_trigger_update_or_delete_audit_rows(unit):
    from django.db.utils import DatabaseError

    from triage.dbroles import app_role_grant
    from triage.services import audit_record

    audit_record(action="test.before", unit=unit, actor_username="red-team")
    role = re.sub(r"[^a-z0-9_]", "_", f"neopain_app_{connection.settings_dict['NAME']}".lower())[:63]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {role}" if _role_exists(cursor, role) else "SELECT 1")
        if not _role_exists(cursor, role):
            cursor.execute(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER")
    app_role_grant(connection=connection, role=role)
    refused = {}
    allowed = {}
    attempts = {
        "disable trigger": "ALTER TABLE triage_auditevent DISABLE TRIGGER ALL",
        "drop trigger": "DROP TRIGGER triage_auditevent_append_only ON triage_auditevent",
        "update": "UPDATE triage_auditevent SET action = 'forged'",
        "delete": "DELETE FROM triage_auditevent",
        "truncate": "TRUNCATE triage_auditevent",
        "drop table": "DROP TABLE triage_auditevent",
    }
    works = {
        "insert audit": "INSERT INTO triage_auditevent (created_at, actor_username, action, object_type, object_id)"
        " VALUES (now(), 'app', 'test.app', '', '')",
        "select audit": "SELECT count(*) FROM triage_auditevent",
        "update a unit": "UPDATE triage_unit SET name = name",
    }
    try:
        for name, sql in {**attempts, **works}.items():
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL ROLE {role}")
                    cursor.execute(sql)
                allowed[name] = True
            except DatabaseError as exc:
                refused[name] = str(exc).splitlines()[0]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")

    assert set(refused) == set(attempts), refused
    assert all("permission denied" in message or "must be owner" in message for message in refused.values()), refused
    assert set(allowed) == set(works)
    assert AuditEvent.objects.filter(action="test.before").exists()
    assert not AuditEvent.objects.filter(action="forged").exists()


def _role_exists(cursor, role: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    return cursor.fetchone() is not None


def test_compose_runs_migrations_as_the_owner_and_the_app_as_the_app_role():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]

    assert services["migrate"]["environment"]["DATABASE_URL"].startswith("postgres://neopain_owner:")
    assert services["migrate"]["environment"]["NEOPAIN_DB_APP_ROLE"] == "neopain_app"
    for name in ("web", "worker", "worker-clips", "worker-default", "beat"):
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgres://neopain_app:"), name
    assert "./scripts/postgres-init.sh:/docker-entrypoint-initdb.d/10-neopain-roles.sh:ro" in services["postgres"]["volumes"]


def test_the_grants_are_refused_for_a_role_name_that_is_not_plain():
    from triage.dbroles import app_role_grant

    class FakePostgres:
        vendor = "postgresql"

    with pytest.raises(ValueError, match="not a plain PostgreSQL role name"):
        app_role_grant(connection=FakePostgres(), role='app"; DROP TABLE triage_auditevent; --')


# --- 6. clips on their own queue, a pixel cap on clip frames --------------------------------------


def test_clips_have_their_own_queue_so_frames_are_never_behind_them():
    from neopain_site.celery import app

    assert app.conf.task_routes["triage.tasks.clip_process"] == {"queue": "clips"}
    assert app.conf.task_routes["triage.tasks.frame_process"] == {"queue": "inference"}
    for script in ("scripts/run.sh", "scripts/worker.sh"):
        assert "inference,clips,default" in (ROOT / script).read_text(), script


def test_a_clip_over_the_pixel_cap_is_refused_before_its_frames_are_decoded(tmp_path):
    import cv2
    import numpy as np

    from inference.keyframes import UnreadableClip, keyframes_from_bytes

    path = tmp_path / "big.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 480))
    for i in range(3):
        writer.write(np.full((480, 640, 3), 40 * i, dtype=np.uint8))
    writer.release()
    data = path.read_bytes()

    with pytest.raises(UnreadableClip, match="640x480 = 307200 pixels, over the cap of 100000"):
        keyframes_from_bytes(data, ".avi", max_pixels=100_000)
    assert keyframes_from_bytes(data, ".avi", max_pixels=640 * 480)  # at the cap: accepted


# --- 7. only a token-authenticated request skips the idle timeout --------------------------------


@pytest.mark.parametrize("header", ["Foo bar", "Token " + "0" * 40, "Bearer x"])
def test_an_arbitrary_authorization_header_does_not_skip_the_idle_timeout(settings, monkeypatch, nurse, header):
    import triage.middleware as middleware

    settings.NEOPAIN_IDLE_TIMEOUT_SECONDS = 60
    now = [1_000_000.0]
    monkeypatch.setattr(middleware.time, "time", lambda: now[0])
    client = Client()
    client.force_login(nurse)
    assert client.get("/").status_code == 200
    now[0] += 61

    response = client.get("/", HTTP_AUTHORIZATION=header)

    assert response.status_code == 302 and "expired=1" in response["Location"]
    assert client.get("/").status_code == 302  # the session is gone


def test_a_request_authenticated_by_its_token_is_not_subject_to_the_idle_timeout(
    settings, monkeypatch, client_for, nurse
):
    import triage.middleware as middleware

    settings.NEOPAIN_IDLE_TIMEOUT_SECONDS = 60
    now = [1_000_000.0]
    monkeypatch.setattr(middleware.time, "time", lambda: now[0])
    client = client_for(nurse)
    client.force_login(nurse)  # a session cookie too, idle for longer than the timeout
    assert client.get("/api/v1/cases/").status_code == 200
    now[0] += 61

    assert client.get("/api/v1/cases/").status_code == 200


# --- 8. a cap on every request body ----------------------------------------------------------------


def test_a_large_multipart_body_to_a_non_upload_endpoint_is_refused_before_it_is_read(client_for, nurse, north):
    blob = SimpleUploadedFile("big.bin", b"\0" * (3 * 1024 * 1024), content_type="application/octet-stream")

    response = client_for(nurse).post(
        f"/api/v1/alerts/{north['alert'].pk}/acknowledge/", {"note": "seen", "blob": blob}, format="multipart"
    )

    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    north["alert"].refresh_from_db()
    assert north["alert"].acknowledged_at is None


def test_a_declared_300_mb_body_is_refused_from_the_header_alone(nurse):
    client = Client()
    client.force_login(nurse)

    response = client.generic(
        "POST", "/api/v1/alerts/1/acknowledge/", b"x", content_type="multipart/form-data; boundary=b",
        CONTENT_LENGTH=str(300 * 1024 * 1024),
    )

    assert response.status_code == 413


def test_the_upload_endpoints_keep_their_own_larger_caps(settings, client_for, device, neonate):
    settings.NEOPAIN_MAX_REQUEST_BYTES = 4096
    image = SimpleUploadedFile("f.png", png_bytes(size=(200, 200), seed=4242), content_type="image/png")

    response = client_for(device.user).post("/api/v1/frames/", {"neonate": neonate.mrn, "image": image}, format="multipart")

    assert response.status_code == 202
    assert client_for(device.user).get("/api/v1/frames/", {"x": "y" * 10}).status_code == 200


def test_gunicorn_limits_request_lines_and_headers_everywhere_it_is_started():
    for path in ("docker-compose.yml", "Dockerfile", "scripts/run.sh"):
        text = (ROOT / path).read_text()
        for flag in ("--limit-request-line", "--limit-request-fields", "--limit-request-field_size"):
            assert flag in text, (path, flag)


# --- 9. sign-in throttle: real client address, backoff, spraying -----------------------------------


@pytest.fixture
def proxied(settings):
    settings.NEOPAIN_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.NEOPAIN_LOGIN_FAILURE_LIMIT = 3
    return f"10.0.0.{secrets.randbelow(250) + 1}"


def test_behind_a_trusted_proxy_a_stranger_cannot_lock_a_nurse_out(proxied, db):
    nurse = UserFactory(username=f"n-{uuid.uuid4().hex[:8]}", role=Role.NURSE)
    attacker = Client(REMOTE_ADDR=proxied, HTTP_X_FORWARDED_FOR="203.0.113.5")
    for _ in range(4):
        attacker.post("/login/", {"username": nurse.username, "password": "guess"})
    assert attacker.post("/login/", {"username": nurse.username, "password": "guess"}).status_code == 429

    ward = Client(REMOTE_ADDR=proxied, HTTP_X_FORWARDED_FOR="198.51.100.7")
    response = ward.post("/login/", {"username": nurse.username, "password": TEST_PASSWORD})

    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="login.failed", ip="203.0.113.5").count() >= 3


def test_a_forged_forwarded_for_from_an_untrusted_address_is_ignored(settings, rf):
    from triage.addresses import client_ip

    settings.NEOPAIN_TRUSTED_PROXIES = ["10.0.0.1"]
    direct = rf.get("/", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="203.0.113.77")
    chained = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.77, 198.51.100.2")

    assert client_ip(direct) == "192.0.2.9"
    assert client_ip(chained) == "198.51.100.2"  # the left end is whatever the client wrote


def test_the_lockout_is_a_backoff_after_which_the_right_password_works(settings, monkeypatch, db):
    import triage.auth as auth

    settings.NEOPAIN_LOGIN_FAILURE_LIMIT = 3
    settings.NEOPAIN_LOGIN_BACKOFF_SECONDS = 30
    now = [2_000_000.0]
    monkeypatch.setattr(auth, "_now", lambda: now[0])
    nurse = UserFactory(username=f"n-{uuid.uuid4().hex[:8]}", role=Role.NURSE)
    client = Client(REMOTE_ADDR=_fresh_address())
    for _ in range(3):
        client.post("/login/", {"username": nurse.username, "password": "wrong"})

    locked = client.post("/login/", {"username": nurse.username, "password": TEST_PASSWORD})
    assert locked.status_code == 429 and int(locked["Retry-After"]) == 30

    now[0] += 31
    client.post("/login/", {"username": nurse.username, "password": "wrong"})  # a 4th failure: 60 s now
    assert int(client.post("/login/", {"username": nurse.username, "password": TEST_PASSWORD})["Retry-After"]) == 60

    now[0] += 61
    assert client.post("/login/", {"username": nurse.username, "password": TEST_PASSWORD}).status_code == 302


def test_spraying_one_password_over_many_accounts_is_slowed(settings, db):
    settings.NEOPAIN_LOGIN_ADDRESS_FAILURE_LIMIT = 4
    client = Client(REMOTE_ADDR=_fresh_address())
    names = [UserFactory(username=f"s-{uuid.uuid4().hex[:8]}", role=Role.NURSE).username for _ in range(5)]
    for name in names[:4]:
        assert client.post("/login/", {"username": name, "password": "Winter2026!"}).status_code == 200

    sprayed = client.post("/login/", {"username": names[4], "password": "Winter2026!"})

    assert sprayed.status_code == 429 and int(sprayed["Retry-After"]) > 0


# --- 13. password validation at setup, self-service password change --------------------------------


def test_neopain_setup_refuses_a_weak_password(monkeypatch, db):
    monkeypatch.setenv("NEOPAIN_ADMIN_PASSWORD", "a")

    with pytest.raises(CommandError, match="NEOPAIN_ADMIN_PASSWORD is too weak"):
        call_command("neopain_setup", "--skip-model", stdout=io.StringIO())
    assert not User.objects.filter(username="unitadmin").exists()


def test_neopain_setup_accepts_a_strong_password(monkeypatch, db):
    monkeypatch.setenv("NEOPAIN_ADMIN_PASSWORD", "violet-kettle-93-harbour")
    monkeypatch.setenv("NEOPAIN_NURSE_PASSWORD", "amber-lantern-41-meadow")

    call_command("neopain_setup", "--skip-model", stdout=io.StringIO())

    assert User.objects.get(username="unitadmin").check_password("violet-kettle-93-harbour")


def test_a_nurse_changes_their_own_password_with_the_validators_applied(browser_for, nurse):
    client = browser_for(nurse)
    page = client.get("/password/")
    assert page.status_code == 200 and b'name="new_password1"' in page.content

    weak = client.post(
        "/password/", {"old_password": TEST_PASSWORD, "new_password1": "12345678", "new_password2": "12345678"}
    )
    assert weak.status_code == 200 and b"too short" in weak.content
    nurse.refresh_from_db()
    assert nurse.check_password(TEST_PASSWORD)

    done = client.post(
        "/password/",
        {"old_password": TEST_PASSWORD, "new_password1": "quiet-harbour-58-violet", "new_password2": "quiet-harbour-58-violet"},
    )
    assert done.status_code == 302 and done["Location"] == "/password/done/"
    nurse.refresh_from_db()
    assert nurse.check_password("quiet-harbour-58-violet")
    assert AuditEvent.objects.filter(action="password.changed", actor=nurse).count() == 1
    assert client.get("/").status_code == 200  # still signed in


# --- 14 and 17: production refusals, DEBUG only on request ----------------------------------------


def _settings_probe(env: dict[str, str]):
    from tests.platform.test_settings import run_settings

    return run_settings(env, "import django; django.setup(); from django.conf import settings as s; print(s.DEBUG)")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_SECRET_KEY": "change-me", "DJANGO_ALLOWED_HOSTS": "a.org"}, "refuses this DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "short-key", "DJANGO_ALLOWED_HOSTS": "a.org"}, "refuses this DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "k" * 50, "DJANGO_ALLOWED_HOSTS": "*"}, "refuses DJANGO_ALLOWED_HOSTS='*'"),
        ({"DJANGO_SECRET_KEY": "k" * 50, "DJANGO_ALLOWED_HOSTS": "a.org,*"}, "refuses DJANGO_ALLOWED_HOSTS='*'"),
        ({"DJANGO_SECRET_KEY": "k" * 50, "DJANGO_ALLOWED_HOSTS": "a.org", "NEOPAIN_DEBUG": "1"}, "NEOPAIN_DEBUG"),
    ],
    ids=["placeholder-key", "short-key", "any-host", "any-host-in-a-list", "debug"],
)
def test_production_refuses_a_placeholder_key_any_host_and_debug(tmp_path, env, message):
    result = _settings_probe({"NEOPAIN_ENV": "production", "NEOPAIN_DATA_DIR": str(tmp_path), **env})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


@pytest.mark.parametrize(
    ("env", "debug"),
    [({}, "False"), ({"DJANGO_DEBUG": "1"}, "False"), ({"NEOPAIN_DEBUG": "1"}, "True")],
    ids=["default", "old-variable-ignored", "asked-for"],
)
def test_debug_is_on_only_when_asked_for(tmp_path, env, debug):
    result = _settings_probe({"NEOPAIN_ENV": "development", "NEOPAIN_DATA_DIR": str(tmp_path), **env})

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == debug


def test_make_run_says_how_to_turn_debug_on():
    assert "NEOPAIN_DEBUG=1 make run" in (ROOT / "scripts" / "run.sh").read_text()


# --- 15. Swagger UI from our own files, a CSP without inline script --------------------------------


def test_the_api_docs_load_nothing_from_a_cdn_and_no_inline_script(browser_for, nurse):
    client = browser_for(nurse)
    page = client.get("/api/docs/")
    html = page.content.decode()

    assert page.status_code == 200
    assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html
    sources = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert sources and all(s.startswith("/static/") or s.startswith("/api/docs/") for s in sources), sources
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    script = client.get(next(s for s in sources if s.startswith("/api/docs/")))
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    assert client.get(next(s for s in sources if "swagger-ui-bundle" in s)).status_code == 200


@pytest.mark.parametrize("path", ["/", "/alerts/", "/neonates/", "/api/docs/", "/password/"])
def test_html_pages_carry_a_csp_that_forbids_inline_script(browser_for, unit_admin, path):
    response = browser_for(unit_admin).get(path)
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())

    assert response.status_code == 200
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"


def test_no_template_has_an_inline_script_or_event_handler():
    offenders = []
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text) or re.search(r"\son[a-z]+\s*=", text):
            offenders.append(str(template.relative_to(ROOT)))

    assert offenders == []


def test_the_login_page_works_under_the_policy(client):
    response = client.get("/login/")

    assert response.status_code == 200 and "script-src 'self'" in response["Content-Security-Policy"]


# --- 12. reads of patient data are audited, one row per request ----------------------------------


def test_api_and_page_reads_of_patient_data_are_audited_once_per_request(client_for, browser_for, nurse, north):
    before = AuditEvent.objects.filter(action="phi.read").count()
    api = client_for(nurse)

    assert api.get("/api/v1/cases/").status_code == 200
    assert api.get(f"/api/v1/cases/{north['case'].pk}/").status_code == 200
    assert api.get("/api/v1/neonates/").status_code == 200
    assert browser_for(nurse).get(f"/neonates/{north['neonate'].pk}/timeline/").status_code == 200

    rows = list(AuditEvent.objects.filter(action="phi.read").order_by("id"))[before:]
    assert [(r.after["route"], r.object_type, r.object_id) for r in rows] == [
        ("api-case-list", "", ""),
        ("api-case-detail", "triage.TriageCase", str(north["case"].pk)),
        ("api-neonates", "", ""),
        ("neonate_timeline", "triage.Neonate", str(north["neonate"].pk)),
    ]
    assert all(r.actor_id == nurse.pk and r.unit_id == nurse.unit_id and r.created_at for r in rows)


def test_a_refused_read_writes_no_read_row(client_for, nurse, south):
    before = AuditEvent.objects.filter(action="phi.read").count()

    assert client_for(nurse).get(f"/api/v1/cases/{south['case'].pk}/").status_code == 404
    assert AuditEvent.objects.filter(action="phi.read").count() == before
