"""/api/v1/clips/, /api/v1/alerts/, /api/v1/models/, /api/v1/health/, the schema and Swagger UI."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from tests.factories import AlertFactory, ModelVersionFactory, NeonateFactory
from tests.platform.conftest import files_under
from triage import services
from triage.models import Clip, Frame

pytestmark = pytest.mark.django_db


def post_clip(client, *, mrn, data, **extra):
    return client.post(
        "/api/v1/clips/",
        {"neonate": mrn, "video": SimpleUploadedFile("c.mp4", data, content_type="video/mp4"), **extra},
        format="multipart",
    )


def test_a_device_uploads_a_clip_and_gets_202(client_for, device, neonate, small_clip_bytes):
    response = post_clip(client_for(device.user), mrn=neonate.mrn, data=small_clip_bytes)

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["frames"] == [] and body["duplicate"] is False
    clip = Clip.objects.get(pk=body["id"])
    assert clip.extension == ".mp4" and clip.video.name.startswith("clips/")


def test_the_same_clip_twice_returns_the_first(client_for, device, neonate, small_clip_bytes):
    client = client_for(device.user)
    first = post_clip(client, mrn=neonate.mrn, data=small_clip_bytes).json()
    second = post_clip(client, mrn=neonate.mrn, data=small_clip_bytes)

    assert second.status_code == 200 and second.json()["id"] == first["id"]


def test_it_refuses_a_clip_that_is_not_a_video(client_for, nurse, neonate, settings):
    response = post_clip(client_for(nurse), mrn=neonate.mrn, data=b"\x89PNG\r\n\x1a\nnot a video")

    assert response.status_code == 400
    assert response.json()["detail"].startswith("video: Not an accepted video container")
    assert files_under(settings.MEDIA_ROOT) == []


def test_it_refuses_a_clip_over_the_cap(client_for, nurse, neonate, small_clip_bytes, settings):
    settings.NEOPAIN_MAX_CLIP_BYTES = 100

    assert post_clip(client_for(nurse), mrn=neonate.mrn, data=small_clip_bytes).status_code == 413
    assert not Clip.objects.exists()


def test_clip_keyframes_become_frames_timed_from_the_clip_start(client_for, device, neonate, small_clip_bytes):
    start = timezone.now() - timedelta(minutes=5)
    body = post_clip(
        client_for(device.user), mrn=neonate.mrn, data=small_clip_bytes, captured_at=start.isoformat()
    ).json()

    created = services.clip_process(clip_id=body["id"])

    clip = Clip.objects.get(pk=body["id"])
    assert clip.status == "done" and clip.keyframe_count >= 1 and created >= 1
    frames = list(Frame.objects.filter(clip=clip))
    assert frames and all(f.status == "queued" and f.device == device for f in frames)
    for frame in frames:
        assert frame.captured_at == start + timedelta(seconds=frame.clip_time_s)
    detail = client_for(device.user).get(f"/api/v1/clips/{clip.pk}/").json()
    assert detail["frames"] == sorted(f.pk for f in sorted(frames, key=lambda f: (f.clip_time_s, f.pk)))


def test_a_clip_whose_video_cannot_be_decoded_fails_with_a_reason(device, neonate):
    from django.core.files.base import ContentFile

    clip = Clip(neonate=neonate, unit=neonate.unit, sha256="0" * 64, extension=".mp4")
    clip.video.save("x", ContentFile(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100), save=True)

    services.clip_process(clip_id=clip.pk)

    clip.refresh_from_db()
    assert clip.status == "failed" and clip.reason


def test_processing_a_clip_twice_is_a_no_op(client_for, device, neonate, small_clip_bytes):
    body = post_clip(client_for(device.user), mrn=neonate.mrn, data=small_clip_bytes).json()
    services.clip_process(clip_id=body["id"])
    count = Frame.objects.count()

    assert services.clip_process(clip_id=body["id"]) == 0
    assert Frame.objects.count() == count


def test_the_alert_list_shows_open_alerts_of_my_unit_only(client_for, nurse, neonate, other_neonate):
    mine = AlertFactory(neonate=neonate, suppressed_count=2)
    AlertFactory(neonate=neonate, acknowledged_at=timezone.now())
    AlertFactory(neonate=other_neonate)

    body = client_for(nurse).get("/api/v1/alerts/").json()

    assert body["count"] == 1
    (row,) = body["results"]
    assert (row["id"], row["neonate"], row["bed"], row["source"], row["suppressed_count"]) == (
        mine.pk,
        neonate.mrn,
        neonate.bed,
        "auto",
        2,
    )


def test_the_alert_list_is_newest_first(client_for, nurse, unit):
    older = AlertFactory(neonate=NeonateFactory(unit=unit), created_at=timezone.now() - timedelta(hours=1))
    newer = AlertFactory(neonate=NeonateFactory(unit=unit))

    body = client_for(nurse).get("/api/v1/alerts/").json()

    assert [row["id"] for row in body["results"]] == [newer.pk, older.pk]


def test_an_ml_engineer_activates_a_model_over_the_api(client_for, ml_engineer, bootstrap_bundle):
    model = services.model_version_register(bundle_path=bootstrap_bundle)

    response = client_for(ml_engineer).post(f"/api/v1/models/{model.pk}/activate/")

    assert response.status_code == 200
    assert response.json()["status"] == "active"


def test_clinicians_see_global_and_own_unit_models_only(client_for, nurse, unit, other_unit):
    ModelVersionFactory(unit=None, status="active")
    ModelVersionFactory(unit=unit, status="candidate")
    ModelVersionFactory(unit=other_unit, status="candidate")

    body = client_for(nurse).get("/api/v1/models/").json()

    assert body["count"] == 2
    assert {row["unit"] for row in body["results"]} == {None, "north"}


def test_health_answers_without_credentials(api_client):
    response = api_client.get("/api/v1/health/")

    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_the_api_answers_503_when_the_database_is_down(client_for, nurse, monkeypatch):
    from django.db import OperationalError

    from triage import selectors

    def down(**kwargs):
        raise OperationalError("could not connect to server: secret-host:5432")

    client = client_for(nurse)
    monkeypatch.setattr(selectors, "alerts_open", down)
    response = client.get("/api/v1/alerts/")

    assert response.status_code == 503
    assert response.json() == {"detail": "Service temporarily unavailable. Try again shortly."}
    assert "secret-host" not in response.content.decode()


def test_the_openapi_schema_and_swagger_ui_are_served(client_for, nurse):
    client = client_for(nurse)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = client.get("/api/docs/")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/frames/",
        "/api/v1/frames/{id}/",
        "/api/v1/neonates/",
        "/api/v1/units/",
        "/api/v1/units/{id}/",
        "/api/v1/clips/",
        "/api/v1/alerts/",
    ):
        assert path in paths
    assert docs.status_code == 200


def test_the_schema_generates_without_warnings():
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_an_unauthenticated_call_gets_401_json(api_client):
    response = api_client.get("/api/v1/frames/")

    assert response.status_code == 401
    assert response.json()["detail"] == "Authentication credentials were not provided."
    assert response["WWW-Authenticate"].startswith("Token")


def test_a_bad_token_gets_401(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert api_client.get("/api/v1/frames/").status_code == 401
