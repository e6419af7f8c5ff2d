"""POST/GET /api/v1/frames/: validation before storage, dedupe, scoping, the documented body."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from tests.factories import FrameFactory, NeonateFactory, PredictionFactory, TriageCaseFactory, png_bytes
from tests.platform.conftest import files_under
from triage.models import AuditEvent, Frame

pytestmark = pytest.mark.django_db

URL = "/api/v1/frames/"


def upload(client, *, mrn, data, name="face.png", content_type="image/png", **extra):
    return client.post(
        URL,
        {"neonate": mrn, "image": SimpleUploadedFile(name, data, content_type=content_type), **extra},
        format="multipart",
    )


def test_it_queues_an_uploaded_frame_and_answers_202(client_for, device, neonate, upload_png, settings):
    response = upload(client_for(device.user), mrn=neonate.mrn, data=upload_png)

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert body["duplicate"] is False
    assert body["frame_sha256"] == hashlib.sha256(upload_png).hexdigest()
    assert body["prediction"] is None
    assert body["neonate"] == neonate.mrn
    assert response["Location"] == f"/api/v1/frames/{body['id']}/"
    frame = Frame.objects.get(pk=body["id"])
    assert frame.device == device and frame.uploaded_by == device.user
    assert (frame.image_format, frame.width, frame.height) == ("PNG", 64, 48)


def test_it_stores_the_image_under_a_server_generated_name(client_for, nurse, neonate, upload_png):
    response = upload(client_for(nurse), mrn=neonate.mrn, data=upload_png, name="../../etc/passwd MRN-NORTH-1.png")

    frame = Frame.objects.get(pk=response.json()["id"])
    assert "passwd" not in frame.image.name and "MRN" not in frame.image.name
    assert frame.image.name.startswith("frames/") and frame.image.name.endswith(".png")
    with frame.image.open("rb") as handle:
        assert handle.read() == upload_png


def test_it_returns_the_existing_frame_for_the_same_image_and_neonate(client_for, device, neonate, upload_png):
    client = client_for(device.user)
    first = upload(client, mrn=neonate.mrn, data=upload_png)
    second = upload(client, mrn=neonate.mrn, data=upload_png, name="renamed.png")

    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["duplicate"] is True
    assert Frame.objects.count() == 1


def test_it_keeps_the_same_image_for_two_neonates_apart(client_for, nurse, neonate, unit, upload_png):
    twin = NeonateFactory(mrn="MRN-NORTH-2", unit=unit)
    client = client_for(nurse)
    assert upload(client, mrn=neonate.mrn, data=upload_png).status_code == 202
    assert upload(client, mrn=twin.mrn, data=upload_png).status_code == 202


@pytest.mark.parametrize(
    ("data", "name", "fragment"),
    [
        (b"", "empty.png", "empty file"),
        (b"hello, this is text", "x.png", "plain text"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "x.png", "SVG"),
        (b"<html><body>hi</body></html>", "x.jpg", "HTML"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "x.png", ""),
        (b"%PDF-1.4 fake", "x.pdf", "PDF"),
    ],
    ids=["empty", "text", "svg", "html", "truncated-png", "pdf"],
)
def test_it_refuses_what_is_not_an_image_and_stores_nothing(client_for, nurse, neonate, settings, data, name, fragment):
    response = upload(client_for(nurse), mrn=neonate.mrn, data=data, name=name)

    assert response.status_code == 400
    body = response.json()
    assert "image" in body and body["detail"].startswith("image: Not an acceptable image")
    assert fragment in body["detail"]
    assert Frame.objects.count() == 0
    assert files_under(settings.MEDIA_ROOT) == []


def test_it_sniffs_content_not_the_client_content_type(client_for, nurse, neonate):
    jpeg = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(jpeg, format="JPEG")

    response = upload(client_for(nurse), mrn=neonate.mrn, data=jpeg.getvalue(), name="x.gif", content_type="text/plain")

    assert response.status_code == 202
    assert response.json()["format"] == "JPEG"


def test_it_refuses_an_image_over_the_pixel_cap(client_for, nurse, neonate, settings):
    settings.NEOPAIN_MAX_IMAGE_PIXELS = 1000

    response = upload(client_for(nurse), mrn=neonate.mrn, data=png_bytes(size=(64, 48)))

    assert response.status_code == 400
    assert "pixel" in response.json()["detail"]
    assert files_under(settings.MEDIA_ROOT) == []


def test_it_answers_413_for_a_file_over_the_byte_cap_and_stores_nothing(client_for, nurse, neonate, settings):
    settings.NEOPAIN_MAX_UPLOAD_BYTES = 200
    data = png_bytes(size=(64, 48)) + b"\x00" * 300

    response = upload(client_for(nurse), mrn=neonate.mrn, data=data)

    assert response.status_code == 413
    assert response.json() == {"detail": "File is over the 200-byte limit.", "limit_bytes": 200}
    assert Frame.objects.count() == 0
    assert files_under(settings.MEDIA_ROOT) == []


def test_it_refuses_a_declared_oversized_body_without_reading_it(client_for, nurse, neonate, settings):
    settings.NEOPAIN_MAX_UPLOAD_BYTES = 1000
    data = b"\xff\xd8\xff" + b"\x00" * 200_000  # Content-Length alone exceeds cap + slack

    response = upload(client_for(nurse), mrn=neonate.mrn, data=data)

    assert response.status_code == 413
    assert Frame.objects.count() == 0


def test_it_refuses_a_capture_time_in_the_future(client_for, nurse, neonate, upload_png, settings):
    settings.NEOPAIN_MAX_FUTURE_SKEW_SECONDS = 300
    future = (timezone.now() + timedelta(hours=1)).isoformat()

    response = upload(client_for(nurse), mrn=neonate.mrn, data=upload_png, captured_at=future)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("captured_at:")
    assert "in the future" in response.json()["detail"]
    assert files_under(settings.MEDIA_ROOT) == []


def test_it_accepts_a_capture_time_within_the_allowed_skew(client_for, nurse, neonate, upload_png):
    soon = timezone.now() + timedelta(seconds=60)

    response = upload(client_for(nurse), mrn=neonate.mrn, data=upload_png, captured_at=soon.isoformat())

    assert response.status_code == 202
    assert Frame.objects.get().captured_at == soon.replace(microsecond=soon.microsecond)


def test_it_refuses_an_unknown_mrn_with_a_clear_error(client_for, device, upload_png):
    response = upload(client_for(device.user), mrn="NOPE", data=upload_png)

    assert response.status_code == 400
    assert response.json()["neonate"] == ["No active neonate with MRN 'NOPE' in your unit."]


def test_a_device_cannot_upload_for_a_neonate_of_another_unit(client_for, device, other_neonate, upload_png, settings):
    response = upload(client_for(device.user), mrn=other_neonate.mrn, data=upload_png)

    assert response.status_code == 400
    assert response.json()["neonate"] == [f"No active neonate with MRN {other_neonate.mrn!r} in your unit."]
    assert files_under(settings.MEDIA_ROOT) == []


def test_it_refuses_uploads_for_a_discharged_neonate(client_for, nurse, neonate, upload_png):
    neonate.active = False
    neonate.save()

    assert upload(client_for(nurse), mrn=neonate.mrn, data=upload_png).status_code == 400


def test_it_names_missing_fields(client_for, nurse):
    response = client_for(nurse).post(URL, {}, format="multipart")

    assert response.status_code == 400
    body = response.json()
    assert set(body) >= {"detail", "image", "neonate"}


def test_a_deactivated_device_is_refused(client_for, device, neonate, upload_png):
    device.active = False
    device.save()

    assert upload(client_for(device.user), mrn=neonate.mrn, data=upload_png).status_code == 403


def test_the_upload_marks_the_device_as_seen(client_for, device, neonate, upload_png):
    upload(client_for(device.user), mrn=neonate.mrn, data=upload_png)

    device.refresh_from_db()
    assert device.last_seen_at is not None


def test_it_lists_frames_of_a_neonate_paginated_with_count(client_for, nurse, neonate, unit):
    FrameFactory.create_batch(3, neonate=neonate)
    FrameFactory(neonate=NeonateFactory(unit=unit))

    body = client_for(nurse).get(URL, {"neonate": neonate.mrn}).json()

    assert body["count"] == 3
    assert {"next", "previous", "results"} <= set(body)
    assert {f["neonate"] for f in body["results"]} == {neonate.mrn}


def test_the_list_never_shows_another_units_frames(client_for, other_nurse, neonate):
    FrameFactory.create_batch(2, neonate=neonate)

    body = client_for(other_nurse).get(URL, {"neonate": neonate.mrn}).json()

    assert body["count"] == 0


def test_a_device_lists_only_its_own_uploads(client_for, device, neonate, unit):
    FrameFactory(neonate=neonate)  # a nurse's manual upload
    mine = FrameFactory(neonate=neonate, device=device, uploaded_by=device.user)

    body = client_for(device.user).get(URL).json()

    assert [f["id"] for f in body["results"]] == [mine.pk]


def test_the_detail_shows_the_routed_prediction(client_for, nurse, neonate):
    prediction = PredictionFactory(frame=FrameFactory(neonate=neonate), p_pain=0.3, threshold=0.6)
    TriageCaseFactory(prediction=prediction)

    body = client_for(nurse).get(f"{URL}{prediction.frame_id}/").json()

    assert body["status"] == "done" and body["reason"] == ""
    assert body["frame_sha256"] == prediction.frame.sha256
    p = body["prediction"]
    assert p["p_pain"] == pytest.approx(0.3)
    assert p["label"] == "nonpain"
    assert p["confidence"] == pytest.approx(0.7)
    assert p["threshold"] == pytest.approx(0.6)
    assert p["routed_to"] == "auto"
    assert p["model_version"] == prediction.model_version.label
    assert p["weights_sha256"] == prediction.model_version.sha256
    assert p["box"] == [4, 4, 40, 36]
    assert p["case"]["status"] == "open"


def test_another_units_frame_is_a_404(client_for, other_nurse, neonate):
    frame = FrameFactory(neonate=neonate)

    response = client_for(other_nurse).get(f"{URL}{frame.pk}/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No Frame matches the given query."}


def test_uploads_are_logged_not_audited(client_for, device, neonate, upload_png):
    # Uploads are high-volume: they are logged, not audited (the frame row is the record).
    upload(client_for(device.user), mrn=neonate.mrn, data=upload_png)
    assert not AuditEvent.objects.filter(action__startswith="frame").exists()


def test_a_device_re_uploading_a_nurses_image_gets_the_existing_frame(client_for, nurse, device, neonate, upload_png):
    first = upload(client_for(nurse), mrn=neonate.mrn, data=upload_png).json()

    response = upload(client_for(device.user), mrn=neonate.mrn, data=upload_png)

    assert response.status_code == 200
    assert response.json()["id"] == first["id"] and response.json()["duplicate"] is True


def test_oversized_form_fields_answer_413_json(client_for, nurse, neonate, upload_png, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    response = upload(client_for(nurse), mrn=neonate.mrn, data=upload_png, note="x" * 500)

    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large."}


def test_the_list_filters_by_state(client_for, nurse, neonate):
    FrameFactory(neonate=neonate, status="queued")
    failed = FrameFactory(neonate=neonate, status="failed", reason="time limit exceeded")

    body = client_for(nurse).get(URL, {"status": "failed"}).json()
    bad = client_for(nurse).get(URL, {"status": "lost"})

    assert [f["id"] for f in body["results"]] == [failed.pk]
    assert body["results"][0]["reason"] == "time limit exceeded"
    assert bad.status_code == 400 and bad.json()["detail"].startswith("status: Must be one of")
