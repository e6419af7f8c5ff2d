"""Role x endpoint x method: the exact status code each person gets on the platform endpoints.

People (tests/conftest.py): nurse and unit_admin of NICU North, other_nurse of NICU South, an ML
engineer without a unit, the North bed camera (device), a superuser and an anonymous client.
Objects of another unit answer 404; roles that may never do a thing answer 403.
"""

from __future__ import annotations

import itertools

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inference.bundle import sha256_file
from tests.factories import AlertFactory, FrameFactory, ModelVersionFactory, PredictionFactory, UserFactory, png_bytes
from triage.models import Clip

pytestmark = pytest.mark.django_db

PEOPLE = ["nurse", "other_nurse", "unit_admin", "ml_engineer", "device", "superuser", "anonymous"]
_counter = itertools.count()

# endpoint key -> expected code per person, in PEOPLE order
MATRIX = {
    "GET neonates": [200, 200, 200, 403, 403, 200, 401],
    "POST neonates": [201, 201, 201, 403, 403, 201, 401],
    "GET units": [200, 200, 200, 200, 403, 200, 401],
    "GET unit": [200, 404, 200, 200, 403, 200, 401],
    "PATCH unit": [403, 403, 200, 403, 403, 200, 401],
    "POST frames": [202, 400, 202, 403, 202, 202, 401],
    "GET frames": [200, 200, 200, 403, 200, 200, 401],
    "GET frame": [200, 404, 200, 403, 200, 200, 401],
    "POST clips": [202, 400, 202, 403, 202, 202, 401],
    "GET clip": [200, 404, 200, 403, 200, 200, 401],
    "GET alerts": [200, 200, 200, 403, 403, 200, 401],
    "GET models": [200, 200, 200, 200, 403, 200, 401],
    "POST model activate": [403, 403, 403, 200, 403, 200, 401],
    "GET health": [200, 200, 200, 200, 200, 200, 200],
    "GET schema": [200, 200, 200, 200, 200, 200, 401],
    # The case page's heartbeat (issue 13): nurses only; nobody holds the case here, so a nurse of
    # the unit (and a superuser) get the 409 "not_held" the page shows, another unit's nurse a 404.
    "POST case heartbeat": [409, 404, 403, 403, 403, 409, 401],
    # The open-alert badge's poll (issue 13): clinicians; each sees the counts of their own unit.
    "GET alerts summary": [200, 200, 200, 403, 403, 200, 401],
    # FHIR (issue 18): clinicians of the unit; another unit's resource is a 404, its search is empty
    # (test_fhir_search_of_another_unit_is_empty); errors are OperationOutcomes.
    "GET fhir metadata": [200, 200, 200, 200, 200, 200, 200],
    "GET fhir observations": [200, 200, 200, 403, 403, 200, 401],
    "GET fhir observation": [200, 404, 200, 403, 403, 200, 401],
    "GET fhir patient": [200, 404, 200, 403, 403, 200, 401],
    "GET fhir practitioner": [200, 404, 200, 403, 403, 200, 401],
    "GET fhir device": [200, 200, 200, 403, 403, 200, 401],
    "GET fhir flag": [200, 404, 200, 403, 403, 200, 401],
    # Bulk Data kick-off: unit admins (their unit) and superusers; polling another unit's export is a 404
    # (tests/ehr/test_fhir_export.py).
    "GET fhir export": [403, 403, 202, 403, 403, 202, 401],
    # Go to the cot (issue 13): nurses (and superusers, as for claims); another unit's case is a 404.
    "POST case bedside": [200, 404, 403, 403, 403, 200, 401],
    # Double-scoring disagreements (issue 13): clinicians; the review by anyone of the unit but its scorers.
    "GET disagreements": [200, 200, 200, 403, 403, 200, 401],
    "POST disagreement review": [200, 404, 200, 403, 403, 200, 401],
}


@pytest.fixture
def objects(neonate, device, small_clip_bytes, bootstrap_bundle):
    from django.core.files.base import ContentFile

    frame = FrameFactory(neonate=neonate, device=device, uploaded_by=device.user)
    clip = Clip(neonate=neonate, unit=neonate.unit, sha256="c" * 64, uploaded_by=device.user)
    clip.video.save("x", ContentFile(small_clip_bytes), save=True)
    model = ModelVersionFactory(
        status="candidate", unit=None, bundle_path=str(bootstrap_bundle), sha256=sha256_file(bootstrap_bundle)
    )
    prediction = PredictionFactory(frame=FrameFactory(neonate=neonate), model_version=model)
    practitioner = UserFactory(username="fhir-nurse", role="nurse", unit=neonate.unit)
    alert = AlertFactory(neonate=neonate, source="auto", prediction=prediction)
    from annotations.models import ScoreDisagreement
    from tests.factories import NeonateFactory, NipsAssessmentFactory, TriageCaseFactory

    case = TriageCaseFactory(prediction=prediction)
    disputed = TriageCaseFactory(
        # Another baby of the unit: the FHIR search test counts this one's observations.
        prediction=PredictionFactory(
            frame=FrameFactory(neonate=NeonateFactory(unit=neonate.unit, mrn="DISPUTED-1")), model_version=model
        ),
        status="decided",
        assessments_required=2,
    )
    scorers = [UserFactory(username=f"scorer-{i}", role="nurse", unit=neonate.unit) for i in range(2)]
    first, second = (
        NipsAssessmentFactory(case=disputed, nurse=scorer, pain=pain, total=total)
        for scorer, pain, total in zip(scorers, (True, False), (5, 1), strict=True)
    )
    ScoreDisagreement.objects.create(case=disputed, unit=neonate.unit, first=first, second=second)
    return {
        "frame": frame,
        "clip": clip,
        "model": model,
        "prediction": prediction,
        "practitioner": practitioner,
        "alert": alert,
        "case": case,
        "disputed": disputed,
    }


def call(client, key, *, unit, neonate, objects, clip_bytes):
    n = next(_counter)
    if key == "GET neonates":
        return client.get("/api/v1/neonates/")
    if key == "POST neonates":
        # ``unit`` is honoured for superusers only; everyone else registers in their own unit.
        return client.post("/api/v1/neonates/", {"mrn": f"MATRIX-{n}", "unit": unit.code}, format="json")
    if key == "GET units":
        return client.get("/api/v1/units/")
    if key == "GET unit":
        return client.get(f"/api/v1/units/{unit.pk}/")
    if key == "PATCH unit":
        return client.patch(f"/api/v1/units/{unit.pk}/", {"threshold": 0.6}, format="json")
    if key == "POST frames":
        image = SimpleUploadedFile("f.png", png_bytes(seed=1000 + n), content_type="image/png")
        return client.post("/api/v1/frames/", {"neonate": neonate.mrn, "image": image}, format="multipart")
    if key == "GET frames":
        return client.get("/api/v1/frames/")
    if key == "GET frame":
        return client.get(f"/api/v1/frames/{objects['frame'].pk}/")
    if key == "POST clips":
        video = SimpleUploadedFile("c.mp4", clip_bytes + n.to_bytes(4, "big"), content_type="video/mp4")
        return client.post("/api/v1/clips/", {"neonate": neonate.mrn, "video": video}, format="multipart")
    if key == "GET clip":
        return client.get(f"/api/v1/clips/{objects['clip'].pk}/")
    if key == "GET alerts":
        return client.get("/api/v1/alerts/")
    if key == "GET models":
        return client.get("/api/v1/models/")
    if key == "POST model activate":
        return client.post(f"/api/v1/models/{objects['model'].pk}/activate/")
    if key == "GET alerts summary":
        return client.get("/api/v1/alerts/summary/?poll=1")
    if key == "POST case heartbeat":
        from tests.ui.conftest import make_case

        case = make_case(neonate=neonate, crop=False)  # made here: the FHIR rows count the fixture's frames
        return client.post(f"/api/v1/cases/{case.pk}/heartbeat/")
    if key == "GET health":
        return client.get("/api/v1/health/")
    if key == "GET schema":
        return client.get("/api/schema/")
    if key == "GET fhir export":
        return client.get("/fhir/$export", HTTP_PREFER="respond-async")
    if key == "GET disagreements":
        return client.get("/api/v1/disagreements/")
    if key == "POST disagreement review":
        return client.post(f"/api/v1/cases/{objects['disputed'].pk}/disagreement/review/", {}, format="json")
    if key == "POST case bedside":
        return client.post(f"/api/v1/cases/{objects['case'].pk}/bedside/")
    if key.startswith("GET fhir"):
        return client.get(
            {
                "GET fhir metadata": "/fhir/metadata",
                "GET fhir observations": f"/fhir/Observation?patient={neonate.mrn}",
                "GET fhir observation": f"/fhir/Observation/ai-{objects['prediction'].pk}",
                "GET fhir patient": f"/fhir/Patient/{neonate.pk}",
                "GET fhir practitioner": f"/fhir/Practitioner/{objects['practitioner'].pk}",
                "GET fhir device": f"/fhir/Device/{objects['model'].pk}",
                "GET fhir flag": f"/fhir/Flag/alert-{objects['alert'].pk}",
            }[key]
        )
    raise AssertionError(key)


@pytest.mark.parametrize(
    ("key", "person", "expected"),
    [(key, person, codes[i]) for key, codes in MATRIX.items() for i, person in enumerate(PEOPLE)],
    ids=[f"{key}-{person}" for key in MATRIX for person in PEOPLE],
)
def test_permission_matrix(request, client_for, unit, neonate, objects, small_clip_bytes, key, person, expected):
    if person == "anonymous":
        user = None
    elif person == "device":
        user = request.getfixturevalue("device").user
    else:
        user = request.getfixturevalue(person)

    response = call(client_for(user), key, unit=unit, neonate=neonate, objects=objects, clip_bytes=small_clip_bytes)

    assert response.status_code == expected, getattr(response, "data", response.content[:300])
    if expected >= 400 and key.startswith("GET fhir"):
        assert response.json()["resourceType"] == "OperationOutcome"
    elif expected >= 400 and key != "GET schema":
        assert "detail" in response.json()


def test_fhir_search_of_another_unit_is_empty(client_for, objects, neonate, other_nurse, nurse):
    """The 200 of other_nurse on ``GET fhir observations`` above holds nothing of NICU North."""
    url = f"/fhir/Observation?patient={neonate.mrn}"

    assert client_for(nurse).get(url).json()["total"] == 1
    assert client_for(other_nurse).get(url).json()["total"] == 0


def test_a_device_of_the_same_unit_cannot_read_another_cameras_upload(client_for, unit, neonate, device):
    from tests.factories import DeviceFactory, UserFactory
    from triage.models import Role

    frame = FrameFactory(neonate=neonate, device=device, uploaded_by=device.user)
    other_camera = DeviceFactory(unit=unit, user=UserFactory(username="cam2", role=Role.DEVICE, unit=unit))

    assert client_for(other_camera.user).get(f"/api/v1/frames/{frame.pk}/").status_code == 404


def test_a_user_without_a_unit_sees_no_patients(client_for, unit, neonate):
    from tests.factories import UserFactory
    from triage.models import Role

    orphan = UserFactory(username="nobody", role=Role.NURSE, unit=None)

    assert client_for(orphan).get("/api/v1/frames/").status_code == 403


def test_an_inactive_user_is_refused(client_for, nurse):
    client = client_for(nurse)
    nurse.is_active = False
    nurse.save()

    assert client.get("/api/v1/frames/").status_code == 401


# --- pages outside the API: patient images and the Django admin (issue 16) --------------------------
# Signed in with a session (these are browser URLs). Extra people: an ML engineer bound to a unit,
# a unit admin who was given ``is_staff``, and a nurse without a unit. Images of another unit: 404;
# roles that never see patient images (ML engineer, device): 403; the Django admin: superusers only
# (anonymous visitors are sent to its sign-in page, 302; anyone signed in gets a 403 saying why,
# never a second sign-in form: issue 13).

PAGE_PEOPLE = [
    "nurse",
    "other_nurse",
    "unit_admin",
    "staff_unit_admin",
    "ml_engineer",
    "ml_engineer_with_unit",
    "nurse_without_unit",
    "device",
    "superuser",
    "anonymous",
]
PAGE_MATRIX = {
    "GET frame image": [200, 404, 200, 200, 403, 403, 404, 403, 200, 302],
    "GET prediction crop": [200, 404, 200, 200, 403, 403, 404, 403, 200, 302],
    "GET prediction saliency": [200, 404, 200, 200, 403, 403, 404, 403, 200, 302],
    "GET django-admin": [403, 403, 403, 403, 403, 403, 403, 403, 200, 302],
    "GET django-admin neonates": [403, 403, 403, 403, 403, 403, 403, 403, 200, 302],
    "GET django-admin audit log": [403, 403, 403, 403, 403, 403, 403, 403, 200, 302],
    "GET django-admin user": [403, 403, 403, 403, 403, 403, 403, 403, 200, 302],
    "GET django-admin external identities": [403, 403, 403, 403, 403, 403, 403, 403, 200, 302],
    "GET django-admin login": [403, 403, 403, 403, 403, 403, 403, 403, 302, 200],
    # Unit-admin pages in the app (issue 13): unit admins of the unit and superusers only.
    "GET unit people": [403, 403, 200, 200, 403, 403, 403, 403, 200, 302],
    "GET unit babies": [403, 403, 200, 200, 403, 403, 403, 403, 200, 302],
    "GET unit devices": [403, 403, 200, 200, 403, 403, 403, 403, 200, 302],
    "POST unit baby discharge": [403, 403, 302, 302, 403, 403, 403, 403, 302, 302],
    "POST unit person deactivate": [403, 403, 302, 302, 403, 403, 403, 403, 302, 302],
    "POST unit device assign": [403, 403, 302, 302, 403, 403, 403, 403, 302, 302],
    # The ML engineer's models page (issue 13): ML engineers (with or without a unit) and superusers.
    "GET models page": [403, 403, 403, 403, 200, 200, 403, 403, 200, 302],
    "POST models page activate": [403, 403, 403, 403, 302, 302, 403, 403, 302, 302],
    "POST models page compare": [403, 403, 403, 403, 302, 302, 403, 403, 302, 302],
}
# Where a signed-in person's 302 goes (anonymous visitors go to a sign-in page).
PAGE_REDIRECTS = {
    "POST unit baby discharge": "/unit/babies/",
    "POST unit person deactivate": "/unit/people/",
    "POST unit device assign": "/unit/devices/",
    "POST models page activate": "/annotations/models/",
    "POST models page compare": "/annotations/models/",
}


@pytest.fixture
def page_person(request, unit):
    from tests.factories import UserFactory
    from triage.models import Role

    def resolve(name: str):
        if name == "anonymous":
            return None
        if name == "device":
            return request.getfixturevalue("device").user
        if name == "staff_unit_admin":
            admin = request.getfixturevalue("unit_admin")
            admin.is_staff = True
            admin.save(update_fields=["is_staff"])
            return admin
        if name == "ml_engineer_with_unit":
            return UserFactory(username="mel", role=Role.ML_ENGINEER, unit=unit)
        if name == "nurse_without_unit":
            return UserFactory(username="nomad", role=Role.NURSE, unit=None)
        return request.getfixturevalue(name)

    return resolve


@pytest.fixture
def prediction_with_images(neonate, model):
    from django.core.files.base import ContentFile

    from tests.factories import png_bytes
    from tests.ui.conftest import make_case

    prediction = make_case(neonate=neonate, model=model, crop=False).prediction
    prediction.crop.save("c.png", ContentFile(png_bytes(seed=1)), save=False)
    prediction.saliency.save("s.png", ContentFile(png_bytes(seed=2)), save=True)
    return prediction


@pytest.mark.parametrize(
    ("key", "who", "expected"),
    [(key, who, codes[i]) for key, codes in PAGE_MATRIX.items() for i, who in enumerate(PAGE_PEOPLE)],
    ids=[f"{key}-{who}" for key in PAGE_MATRIX for who in PAGE_PEOPLE],
)
def test_page_permission_matrix(request, browser_for, page_person, prediction_with_images, key, who, expected):
    target = {
        "GET frame image": f"/frames/{prediction_with_images.frame_id}/image",
        "GET prediction crop": f"/predictions/{prediction_with_images.pk}/crop",
        "GET prediction saliency": f"/predictions/{prediction_with_images.pk}/saliency",
        "GET django-admin": "/django-admin/",
        "GET django-admin neonates": "/django-admin/triage/neonate/",
        "GET django-admin audit log": "/django-admin/triage/auditevent/",
        "GET django-admin user": "/django-admin/triage/user/",
        "GET django-admin external identities": "/django-admin/triage/externalidentity/",
        "GET django-admin login": "/django-admin/login/",
        "GET unit people": "/unit/people/",
        "GET unit babies": "/unit/babies/",
        "GET unit devices": "/unit/devices/",
        "POST unit baby discharge": f"/unit/babies/{prediction_with_images.frame.neonate_id}/discharge/",
        "POST unit person deactivate": f"/unit/people/{request.getfixturevalue('second_nurse').pk}/",
        "POST unit device assign": f"/unit/devices/{request.getfixturevalue('device').pk}/assign/",
        "GET models page": "/annotations/models/",
        "POST models page activate": f"/annotations/models/{request.getfixturevalue('model').pk}/activate/",
        "POST models page compare": f"/annotations/models/{request.getfixturevalue('model').pk}/compare/",
    }[key]

    client = browser_for(page_person(who))
    response = client.post(target) if key.startswith("POST") else client.get(target)

    assert response.status_code == expected, response.content[:200]
    if expected == 302:
        login = "/django-admin/" if key.startswith("GET django-admin") else "/login/"
        assert response["Location"].startswith(login if who == "anonymous" else PAGE_REDIRECTS.get(key, login))


# --- the camera-token pages (issue 18): unit admins of the camera's unit and superusers only -------
TOKEN_PAGE_MATRIX = {
    "GET devices page": [403, 403, 200, 200, 403, 403, 403, 403, 200, 302],
    "POST camera token new": [403, 403, 200, 200, 403, 403, 403, 403, 200, 302],
    "POST camera token rotate": [403, 403, 200, 200, 403, 403, 403, 403, 200, 302],
    "POST token revoke": [403, 403, 302, 302, 403, 403, 403, 403, 302, 302],
}


@pytest.mark.parametrize(
    ("key", "who", "expected"),
    [(key, who, codes[i]) for key, codes in TOKEN_PAGE_MATRIX.items() for i, who in enumerate(PAGE_PEOPLE)],
    ids=[f"{key}-{who}" for key in TOKEN_PAGE_MATRIX for who in PAGE_PEOPLE],
)
def test_token_page_permission_matrix(browser_for, page_person, device, key, who, expected):
    from tests.factories import api_token_for
    from triage.models import ApiToken

    api_token_for(device.user)
    token = ApiToken.objects.get(user=device.user)
    client = browser_for(page_person(who))
    response = {
        "GET devices page": lambda: client.get("/unit/devices/"),
        "POST camera token new": lambda: client.post(f"/unit/devices/{device.pk}/tokens/new"),
        "POST camera token rotate": lambda: client.post(f"/unit/devices/{device.pk}/tokens/rotate"),
        "POST token revoke": lambda: client.post(f"/unit/tokens/{token.pk}/revoke"),
    }[key]()

    assert response.status_code == expected, response.content[:200]
    token.refresh_from_db()
    changed = key != "GET devices page" and expected in (200, 302) and who != "anonymous"
    assert (token.revoked_at is not None) == (changed and key != "POST camera token new")
    assert ApiToken.objects.filter(user=device.user).count() == (2 if changed and key != "POST token revoke" else 1)


# --- /metrics (issue 18): no role opens it; only the scrape token or an allowed address -------------
@pytest.mark.parametrize("who", PAGE_PEOPLE)
def test_no_role_may_read_metrics_with_its_session_or_api_token(settings, browser_for, client_for, page_person, who):
    settings.NEOPAIN_METRICS_TOKEN, settings.NEOPAIN_METRICS_ALLOWED_IPS = "scrape-token-0123456789", []
    person = page_person(who)

    assert browser_for(person).get("/metrics").status_code == 403
    assert client_for(person).get("/metrics").status_code == 403
    assert browser_for(person).get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-0123456789").status_code == 200
