"""Issue 6, Access (lines 1-6): deploy checks, no anonymous route, the full role matrix, audited settings,
sessions and logins, private images.

The API routes are enumerated from the URL resolver; ``MATRIX`` must have a row for every
(route, method) a view implements, so a new endpoint fails ``test_every_api_route_has_a_matrix_row``
until someone decides who may call it.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from tests.factories import TEST_PASSWORD, png_bytes
from tests.hardening.conftest import PEOPLE
from tests.hardening.routes import all_routes, api_routes
from tests.support import environ_without_app_settings
from triage.models import AuditEvent, UnitSettings

pytestmark = pytest.mark.django_db

ROOT = Path(django_settings.BASE_DIR)
_unique = itertools.count()

# (route name, method) -> expected status for PEOPLE =
#   (nurse, other_nurse, unit_admin, ml_engineer, device, anonymous)
# Objects named in a path belong to the nurse's unit (NICU North); other_nurse is in NICU South.
MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    ("api-health", "GET"): (200, 200, 200, 200, 200, 200),  # liveness only: {"status": "ok"}
    ("api-neonates", "GET"): (200, 200, 200, 403, 403, 401),
    ("api-neonates", "POST"): (201, 201, 201, 403, 403, 401),
    ("api-units", "GET"): (200, 200, 200, 200, 403, 401),
    ("api-unit-detail", "GET"): (200, 404, 200, 200, 403, 401),
    ("api-unit-detail", "PATCH"): (403, 403, 200, 403, 403, 401),
    ("api-frames", "GET"): (200, 200, 200, 403, 200, 401),
    ("api-frames", "POST"): (202, 400, 202, 403, 202, 401),
    ("api-frame-detail", "GET"): (200, 404, 200, 403, 200, 401),
    ("api-clips", "POST"): (202, 400, 202, 403, 202, 401),
    ("api-clip-detail", "GET"): (200, 404, 200, 403, 200, 401),
    ("api-alerts", "GET"): (200, 200, 200, 403, 403, 401),
    ("api-device-heartbeat", "POST"): (403, 403, 403, 403, 200, 401),
    ("api-models", "GET"): (200, 200, 200, 200, 403, 401),
    ("api-model-activate", "POST"): (403, 403, 403, 200, 403, 401),
    ("api-case-list", "GET"): (200, 200, 200, 403, 403, 401),
    ("api-case-detail", "GET"): (200, 404, 200, 403, 403, 401),
    ("api-case-claim", "POST"): (200, 404, 403, 403, 403, 401),
    ("api-case-release", "POST"): (200, 404, 200, 403, 403, 401),
    ("api-case-assessment", "POST"): (201, 404, 403, 403, 403, 401),
    # Nobody holds the shared case, so the nurse's heartbeat answers 409 ("claim it first").
    ("api-case-heartbeat", "POST"): (409, 404, 403, 403, 403, 401),
    ("api-case-bedside", "POST"): (200, 404, 403, 403, 403, 401),
    # The shared case carries no double-scoring disagreement, so there is nothing to review: 404 to the unit too.
    ("api-case-disagreement-review", "POST"): (404, 404, 404, 403, 403, 401),
    ("api-disagreement-list", "GET"): (200, 200, 200, 403, 403, 401),
    ("api-alerts-summary", "GET"): (200, 200, 200, 403, 403, 401),
    ("api-alert-acknowledge", "POST"): (200, 404, 200, 403, 403, 401),
    ("api-assessment-export", "GET"): (200, 200, 200, 403, 403, 401),
    ("schema", "GET"): (200, 200, 200, 200, 200, 401),
    ("swagger-ui", "GET"): (200, 200, 200, 200, 200, 401),
}

# The one route open to anonymous callers, on purpose: load balancers probe it. It says "ok" and nothing else.
PUBLIC_API_ROUTES = {"api-health"}
# FHIR servers answer ``GET /fhir/metadata`` (their CapabilityStatement, no patient data) to anyone (FHIR R4 3.1.0.1.7).
PUBLIC_PAGES = {"fhir/metadata"}

# Which fixture object fills the ``pk`` of each route with one.
PK_OBJECT = {
    "api-unit-detail": "unit",
    "api-frame-detail": "frame",
    "api-clip-detail": "clip",
    "api-model-activate": "model",
    "api-case-detail": "case",
    "api-case-claim": "case",
    "api-case-release": "case",
    "api-case-assessment": "case",
    "api-case-heartbeat": "case",
    "api-case-bedside": "case",
    "api-case-disagreement-review": "case",
    "api-alert-acknowledge": "alert",
}

SCORES = {"face": 1, "cry": 2, "breathing": 1, "arms": 0, "legs": 0, "arousal": 1, "note": "grimace"}


def _route(name: str):
    return next(r for r in api_routes() if r.name == name)


def path_for(route, objects: dict) -> str:
    if not route.kwargs:
        return route.path()
    return route.path(pk=objects[PK_OBJECT[route.name]].pk)


def send(client, method: str, route, objects: dict, clip_bytes: bytes = b""):
    """One request with a body that the allowed roles would get a success for."""
    path = path_for(route, objects)
    n = next(_unique)
    name = route.name
    if method == "POST" and name == "api-frames":
        image = SimpleUploadedFile("f.png", png_bytes(seed=5000 + n), content_type="image/png")
        return client.post(path, {"neonate": objects["neonate"].mrn, "image": image}, format="multipart")
    if method == "POST" and name == "api-clips":
        video = SimpleUploadedFile("c.mp4", clip_bytes + n.to_bytes(4, "big"), content_type="video/mp4")
        return client.post(path, {"neonate": objects["neonate"].mrn, "video": video}, format="multipart")
    body = {
        ("api-neonates", "POST"): {"mrn": f"HARD-{uuid.uuid4().hex[:10]}"},
        ("api-unit-detail", "PATCH"): {"threshold": 0.6},
        ("api-case-assessment", "POST"): SCORES,
        ("api-alert-acknowledge", "POST"): {"note": "seen"},
        ("api-device-heartbeat", "POST"): {"agent_version": "0.1.0", "spool_backlog": 0},
    }.get((name, method))
    call = getattr(client, method.lower())
    return call(path, body, format="json") if body is not None else call(path)


def test_every_api_route_has_a_matrix_row():
    implemented = {(r.name, m) for r in api_routes() for m in r.methods}

    assert implemented, "no API routes found"
    assert sorted(implemented - set(MATRIX)) == [], "new API route or method: add its row to MATRIX"
    assert sorted(set(MATRIX) - implemented) == [], "MATRIX names a route or method that no longer exists"
    assert all(r.name for r in api_routes()), "every API route needs a name"


# --- 1. check --deploy ----------------------------------------------------------------------------


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **environ_without_app_settings(),
        "DJANGO_SETTINGS_MODULE": "neopain_site.settings",
        "NEOPAIN_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        "DJANGO_ALLOWED_HOSTS": "neopain.example.org",
        "NEOPAIN_DATA_DIR": str(tmp_path),
        **extra,
    }


def test_check_deploy_passes_in_production(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_would_catch_a_weakened_production_setting(tmp_path):
    """The check above can fail: switching HSTS off in production is reported."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(tmp_path, DJANGO_SECURE_HSTS_SECONDS="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr


# --- 2. no anonymous access, no AllowAny ------------------------------------------------------------


def test_drf_defaults_require_authentication():
    assert [IsAuthenticated] == api_settings.DEFAULT_PERMISSION_CLASSES
    assert django_settings.SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"] == ["rest_framework.permissions.IsAuthenticated"]


def test_no_api_view_falls_back_to_allow_any():
    open_views = []
    for route in api_routes():
        view = route.view_class
        assert view is not None, f"{route.route} is not a class-based API view"
        classes = list(getattr(view, "permission_classes", []))
        if not classes or AllowAny in classes:
            open_views.append(route.name)

    assert sorted(open_views) == sorted(PUBLIC_API_ROUTES)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
def test_every_api_route_refuses_anonymous_callers(north, method):
    client = APIClient()
    answered = {}
    for route in api_routes():
        if route.name in PUBLIC_API_ROUTES:
            continue
        response = getattr(client, method.lower())(path_for(route, north))
        answered[route.route] = response.status_code

    assert answered, "no protected API routes found"
    assert {path: code for path, code in answered.items() if code != 401} == {}


def test_the_public_health_route_says_nothing_but_ok(api_client):
    response = api_client.get("/api/v1/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert api_client.post("/api/v1/health/").status_code == 405


def test_a_bad_token_is_refused_not_treated_as_anonymous_allow(north):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    assert client.get("/api/v1/frames/").status_code == 401
    assert client.get("/api/schema/").status_code == 401


def test_every_page_sends_anonymous_visitors_to_sign_in(north):
    """Non-API routes (pages, images, admin): an anonymous GET never gets content."""
    from triage.auth import NeoPainLoginView

    client = Client()
    leaks = {}
    values = {
        "pk": north["case"].pk,
        "case_id": north["case"].pk,
        "id": 1,
        "object_id": 1,
        "content_type_id": 1,
        "name": "Observation.ndjson",
    }
    checked = 0
    for route in all_routes():
        if route.is_api or route.view_class is NeoPainLoginView or route.route in PUBLIC_PAGES:
            continue
        path = route.path(**values)
        response = client.get(path, follow=True)
        final = response.redirect_chain[-1][0] if response.redirect_chain else path
        refused = response.status_code in (401, 403, 404, 405) or (
            response.status_code == 200
            and final.startswith(("/login/", "/django-admin/login/"))
            and b'name="password"' in response.content
        )
        if not refused:
            leaks[route.route] = (response.status_code, final)
        checked += 1

    assert checked > 20
    assert leaks == {}


# --- 3. the role x endpoint x method matrix -------------------------------------------------------


# Calls whose success changes what the next person would get (a claimed case, an acknowledged alert):
# each person gets fresh objects.
STATEFUL = {
    ("api-case-claim", "POST"),
    ("api-case-release", "POST"),
    ("api-case-assessment", "POST"),
    ("api-case-bedside", "POST"),
    ("api-alert-acknowledge", "POST"),
}


@pytest.mark.parametrize(("name", "method"), list(MATRIX), ids=[f"{m} {n}" for n, m in MATRIX])
def test_role_matrix(subtests, person, client_for, make_north, small_clip_bytes, name, method):
    """One row of the matrix: each of the six people gets exactly the intended status code."""
    route = _route(name)
    shared = make_north()
    for who, expected in zip(PEOPLE, MATRIX[(name, method)]):
        with subtests.test(person=who, expected=expected):
            objects = make_north() if (name, method) in STATEFUL else shared
            response = send(client_for(person(who)), method, route, objects, small_clip_bytes)

            assert response.status_code == expected, getattr(response, "content", b"")[:300]
            if expected >= 400 and response.get("Content-Type", "").startswith("application/json"):
                assert response.json().get("detail"), "every API error carries a detail"


def _expected_for_other_methods(name: str, index: int) -> int:
    """Methods a view does not implement: authentication and permission run first, then 405."""
    if name in PUBLIC_API_ROUTES:
        return 405
    route = _route(name)
    reference = MATRIX[(name, "GET")] if "GET" in route.methods else MATRIX[(name, route.methods[0])]
    code = reference[index]
    return code if code in (401, 403) else 405


@pytest.mark.parametrize("who", PEOPLE)
def test_methods_a_route_does_not_implement_never_succeed(person, client_for, north, who):
    client = client_for(person(who))
    index = PEOPLE.index(who)
    wrong = {}
    for route in api_routes():
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            if method in route.methods:
                continue
            code = getattr(client, method.lower())(path_for(route, north)).status_code
            expected = _expected_for_other_methods(route.name, index)
            if code != expected:
                wrong[f"{method} {route.route}"] = (code, expected)
        options = client.options(path_for(route, north)).status_code
        options_expected = _expected_for_other_methods(route.name, index)
        allowed = route.callback.view_initkwargs.get("http_method_names", route.view_class.http_method_names)
        if options_expected == 405 and "options" in allowed:
            options_expected = 200
        if options != options_expected:
            wrong[f"OPTIONS {route.route}"] = (options, options_expected)

    assert wrong == {}


# Another unit's objects: staff of NICU North reaching for NICU South's. A 404, never a 403 or 200:
# the existence of another unit's baby, frame or case is itself patient data.
# (method, route name, object of NICU South): who of NICU North reaches for it.
_CROSS_UNIT_REACHES = {
    ("GET", "api-unit-detail", "unit"): ("nurse", "unit_admin"),
    ("PATCH", "api-unit-detail", "unit"): ("unit_admin",),
    ("GET", "api-frame-detail", "frame"): ("nurse", "unit_admin", "device"),
    ("GET", "api-clip-detail", "clip"): ("nurse", "device"),
    ("GET", "api-case-detail", "case"): ("nurse", "unit_admin"),
    ("GET", "api-case-detail", "decided_case"): ("nurse",),  # the case that carries an assessment
    ("POST", "api-case-claim", "case"): ("nurse",),
    ("POST", "api-case-release", "case"): ("nurse", "unit_admin"),
    ("POST", "api-case-assessment", "case"): ("nurse",),
    ("POST", "api-case-heartbeat", "case"): ("nurse",),
    ("POST", "api-case-bedside", "case"): ("nurse",),
    ("POST", "api-alert-acknowledge", "alert"): ("nurse", "unit_admin"),
}
CROSS_UNIT = [(who, method, name, obj) for (method, name, obj), whos in _CROSS_UNIT_REACHES.items() for who in whos]


@pytest.mark.parametrize(
    ("who", "method", "name", "obj"), CROSS_UNIT, ids=[f"{w}-{m}-{n}-{o}" for w, m, n, o in CROSS_UNIT]
)
def test_another_units_object_is_a_404(person, client_for, north, south, who, method, name, obj):
    route = _route(name)
    body = {"threshold": 0.6} if method == "PATCH" else SCORES if name == "api-case-assessment" else None
    call = getattr(client_for(person(who)), method.lower())
    path = route.path(pk=south[obj].pk)
    response = call(path, body, format="json") if body else call(path)

    assert response.status_code == 404, response.content[:300]
    assert str(south["neonate"].mrn) not in response.content.decode()


def test_another_units_neonate_is_invisible_everywhere(client_for, browser_for, nurse, north, south):
    api = client_for(nurse)
    mrn = south["neonate"].mrn

    assert mrn not in json.dumps(api.get("/api/v1/neonates/").json())
    assert api.get(f"/api/v1/frames/?neonate={mrn}").json()["count"] == 0
    upload = api.post(
        "/api/v1/frames/",
        {"neonate": mrn, "image": SimpleUploadedFile("f.png", png_bytes(seed=77))},
        format="multipart",
    )
    unknown = api.post(
        "/api/v1/frames/",
        {"neonate": "NO-SUCH-MRN", "image": SimpleUploadedFile("f.png", png_bytes(seed=78))},
        format="multipart",
    )
    assert upload.status_code == unknown.status_code == 400
    assert upload.json()["neonate"] == [f"No active neonate with MRN {mrn!r} in your unit."]
    export = api.get(f"/api/v1/assessments/export.csv?neonate={mrn}")
    assert export.status_code == 200 and export["X-Row-Count"] == "0"
    assert api.get(f"/api/v1/assessments/export.csv?unit={south['unit'].code}").status_code == 403
    page = browser_for(nurse)
    assert page.get(f"/neonates/{south['neonate'].pk}/timeline/").status_code == 404
    assert page.get(f"/cases/{south['decided_case'].pk}/").status_code == 404


# --- 4. the threshold ------------------------------------------------------------------------------


def test_a_nurse_cannot_change_the_threshold(client_for, nurse, unit, north):
    before = UnitSettings.objects.get(unit=unit).threshold
    audit_rows = AuditEvent.objects.count()

    response = client_for(nurse).patch(f"/api/v1/units/{unit.pk}/", {"threshold": 0.9}, format="json")

    assert response.status_code == 403
    assert UnitSettings.objects.get(unit=unit).threshold == before
    assert AuditEvent.objects.count() == audit_rows


def test_a_unit_admins_threshold_change_is_audited_with_actor_utc_time_old_and_new(client_for, unit_admin, unit):
    started = datetime.now(UTC)

    response = client_for(unit_admin).patch(
        f"/api/v1/units/{unit.pk}/", {"threshold": 0.72}, format="json", REMOTE_ADDR="10.1.2.3"
    )

    assert response.status_code == 200 and response.json()["settings"]["threshold"] == 0.72
    event = AuditEvent.objects.get(action="unit_settings.updated")
    assert event.actor_id == unit_admin.pk and event.actor_username == "adam"
    assert event.unit_id == unit.pk
    assert event.before == {"threshold": 0.55} and event.after == {"threshold": 0.72}
    assert event.created_at.utcoffset() == timedelta(0)
    assert started - timedelta(seconds=1) <= event.created_at <= datetime.now(UTC)
    assert event.ip == "10.1.2.3"


# --- 5. sessions, disabled users, failed logins ----------------------------------------------------


@pytest.mark.parametrize("idle_seconds", [60, 300])
def test_an_idle_session_is_signed_out_after_the_configured_time(settings, monkeypatch, nurse, idle_seconds):
    import triage.middleware as middleware

    settings.NEOPAIN_IDLE_TIMEOUT_SECONDS = idle_seconds
    now = [1_000_000.0]
    monkeypatch.setattr(middleware.time, "time", lambda: now[0])
    client = Client()
    client.force_login(nurse)
    assert client.get("/api/v1/cases/").status_code == 200

    now[0] += idle_seconds - 1
    assert client.get("/api/v1/cases/").status_code == 200  # still active: the clock restarts
    now[0] += idle_seconds - 1
    assert client.get("/api/v1/cases/?poll=1").status_code == 200  # polling is not activity
    now[0] += 2
    expired = client.get("/api/v1/cases/")

    assert expired.status_code == 401
    assert "inactivity" in expired.json()["detail"]
    assert client.get("/api/v1/cases/").status_code == 401  # the session is gone, not just one request
    page = client.get("/")
    assert page.status_code == 302 and page["Location"].startswith("/login/")


def test_a_disabled_users_next_request_fails_with_session_and_token(client_for, nurse):
    token_client = client_for(nurse)
    session_client = Client()
    session_client.force_login(nurse)
    assert token_client.get("/api/v1/cases/").status_code == 200
    assert session_client.get("/api/v1/cases/").status_code == 200

    nurse.is_active = False
    nurse.save(update_fields=["is_active"])

    assert token_client.get("/api/v1/cases/").status_code == 401
    assert session_client.get("/api/v1/cases/").status_code in (401, 403)
    page = session_client.get("/")
    assert page.status_code == 302 and page["Location"].startswith("/login/")


def test_a_disabled_device_cannot_upload(client_for, device, north):
    device.active = False
    device.save(update_fields=["active"])
    image = SimpleUploadedFile("f.png", png_bytes(seed=91))

    response = client_for(device.user).post(
        "/api/v1/frames/", {"neonate": north["neonate"].mrn, "image": image}, format="multipart"
    )

    assert response.status_code == 403


@pytest.fixture
def login_user(db):
    """A user with a unique name, so throttle counters in a shared cache never leak between runs."""
    from django.core.cache import cache

    from tests.factories import UserFactory
    from triage.auth import _address_key, _failure_key, _lock_key

    user = UserFactory(username=f"login-{uuid.uuid4().hex[:10]}", role="nurse")
    yield user
    keys = [_failure_key("127.0.0.1", user.username), _address_key("127.0.0.1")]
    cache.delete_many([*keys, *map(_lock_key, keys)])


def test_failed_logins_are_logged_and_audited_without_the_password(caplog, login_user):
    secret = "Wr0ng-" + secrets.token_hex(8)
    with caplog.at_level(logging.INFO):
        response = Client().post("/login/", {"username": login_user.username, "password": secret})

    assert response.status_code == 200  # the form again, with an error
    failures = [r for r in caplog.records if "failed login" in r.getMessage()]
    assert failures and login_user.username in failures[0].getMessage()
    assert all(secret not in r.getMessage() and secret not in str(r.args) for r in caplog.records)
    event = AuditEvent.objects.get(action="login.failed", actor_username=login_user.username)
    assert secret not in json.dumps([event.before, event.after, event.object_id, event.actor_username])


def test_failed_logins_are_throttled_even_for_the_right_password(settings, login_user):
    settings.NEOPAIN_LOGIN_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(3):
        assert client.post("/login/", {"username": login_user.username, "password": "wrong"}).status_code == 200

    throttled = client.post("/login/", {"username": login_user.username, "password": TEST_PASSWORD})

    assert throttled.status_code == 429
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="login.throttled", actor_username=login_user.username).exists()


def test_the_admin_login_is_not_a_way_around_the_throttle(settings, login_user):
    """Django's admin has its own sign-in form; it must not offer unthrottled password guessing."""
    settings.NEOPAIN_LOGIN_FAILURE_LIMIT = 2
    client = Client()
    for _ in range(2):
        client.post("/login/", {"username": login_user.username, "password": "wrong"})

    response = client.post("/django-admin/login/", {"username": login_user.username, "password": TEST_PASSWORD})

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


# --- 6. private images ---------------------------------------------------------------------------


IMAGE_URLS = {
    "frame": lambda o: f"/frames/{o['frame'].pk}/image",
    "crop": lambda o: f"/predictions/{o['prediction'].pk}/crop",
    "saliency": lambda o: f"/predictions/{o['prediction'].pk}/saliency",
}


@pytest.mark.parametrize("kind", IMAGE_URLS)
@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("nurse", 200),
        ("unit_admin", 200),
        ("other_nurse", 404),
        ("ml_engineer", 403),  # never patient images, with or without a unit (issue 16)
        ("device", 403),
        ("anonymous", 302),
    ],
)
def test_images_are_served_only_to_their_units_clinicians(person, with_saliency, kind, who, expected):
    client = Client()
    user = person(who)
    if user is not None:
        client.force_login(user)

    response = client.get(IMAGE_URLS[kind](with_saliency))

    assert response.status_code == expected
    if expected == 200:
        assert response["Content-Disposition"].startswith("inline; filename=")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "no-store" in response["Cache-Control"]
        assert response["Content-Type"].startswith("image/")
        assert b"".join(response.streaming_content)[:4] == b"\x89PNG"
    elif expected == 302:
        assert response["Location"].startswith("/login/")


def test_a_device_token_does_not_open_images(client_for, device, north):
    response = client_for(device.user).get(IMAGE_URLS["frame"](north))

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_no_url_serves_media_root(settings, nurse, north):
    from django.views.static import serve

    assert settings.MEDIA_URL is None
    assert [r.route for r in all_routes() if r.callback is serve] == []
    client = Client()
    client.force_login(nurse)
    name = north["frame"].image.name
    for prefix in ("/media/", "/", "/nonexistent-private/", "/static/", "/static/../media/"):
        response = client.get(prefix + name)
        assert response.status_code == 404, prefix


# --- found by probing (line 21) ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/frames/?neonate=%00", "/api/v1/frames/?%00=1", "/api/v1/cases/%00/"])
def test_a_nul_character_in_the_url_is_a_clear_400_not_a_500(client_for, nurse, path):
    """PostgreSQL cannot store or compare NUL: it must never reach a query."""
    response = client_for(nurse).get(path)

    assert response.status_code in (400, 404)
    assert response["Content-Type"].startswith("application/json")


def test_a_nul_character_in_a_cookie_is_a_clear_400_not_a_500(nurse):
    client = Client(HTTP_COOKIE="sessionid=abcdefgh\x00ijklmnop")

    response = client.get("/api/v1/cases/")

    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
