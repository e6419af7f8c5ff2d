"""Issue 16, security round two: the items in the ingest, registry and API code (2, 4, 5, 6, 10, 11, 16, 18).

Item numbers follow the issue (and docs/security.md, lines 23-40).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from tests.factories import DeviceFactory, UserFactory, png_bytes
from tests.support import RunsCodeWhenUnpickled
from triage import services
from triage.models import Clip, Frame, ModelVersion, Neonate, Role

pytestmark = pytest.mark.django_db


# --- 2. an ML engineer, with or without a unit, never opens a patient image ------------------------


@pytest.fixture
def ml_engineer_with_unit(unit):
    return UserFactory(username="mel", role=Role.ML_ENGINEER, unit=unit)


@pytest.mark.parametrize("kind", ["frame", "crop", "saliency"])
def test_an_ml_engineer_with_a_unit_cannot_download_patient_images(with_saliency, ml_engineer_with_unit, kind):
    from tests.hardening.test_access import IMAGE_URLS

    client = Client()
    client.force_login(ml_engineer_with_unit)

    response = client.get(IMAGE_URLS[kind](with_saliency))

    assert response.status_code == 403


# --- 4. a detector weights file that would run code is refused at registration ---------------------




def test_a_detector_pickle_that_runs_code_is_refused_at_registration(tmp_path):
    import torch

    marker = tmp_path / "pwned"
    weights = tmp_path / "yolo-face.pt"
    torch.save({"model": RunsCodeWhenUnpickled(marker)}, weights)

    with pytest.raises(ValidationError) as refused:
        services.model_version_register(bundle_path=weights, kind="detector")

    assert "would import" in str(refused.value) and "system" in str(refused.value)
    assert not marker.exists()
    assert not ModelVersion.objects.filter(kind="detector").exists()


def test_register_model_refuses_it_with_a_clear_error(tmp_path):
    import torch
    from django.core.management import CommandError, call_command

    marker = tmp_path / "pwned"
    weights = tmp_path / "yolo-face.pt"
    torch.save({"model": RunsCodeWhenUnpickled(marker)}, weights)

    with pytest.raises(CommandError, match="would import"):
        call_command("register_model", str(weights), "--kind", "detector", stdout=io.StringIO())
    assert not marker.exists()


# --- 5. every query parameter parse is a 400 on bad input -----------------------------------------


@pytest.mark.parametrize("value", ["²", "٣", "１２", "9" * 40, "-1", "a b"])
def test_a_malformed_unit_filter_on_the_export_is_a_400(client_for, nurse, value):
    response = client_for(nurse).get("/api/v1/assessments/export.csv", {"unit": value})

    assert response.status_code in (400, 403), response.content[:200]
    if not value.isascii() or " " in value:
        assert response.status_code == 400
        assert "unit" in response.json()


@pytest.mark.parametrize("path", ["/api/v1/frames/", "/api/v1/cases/", "/api/v1/neonates/", "/api/v1/alerts/"])
@pytest.mark.parametrize("page", ["²", "٣", "x"])
def test_a_malformed_page_number_is_a_400(client_for, nurse, path, page):
    response = client_for(nurse).get(path, {"page": page})

    assert response.status_code == 400
    assert "page" in response.json()["detail"].lower()


def test_a_non_ascii_case_cursor_is_a_400(client_for, nurse):
    assert client_for(nurse).get("/api/v1/cases/", {"after": "²"}).status_code == 400


# --- 6. upload throttles, clips capped -------------------------------------------------------------


def _clear_throttle(user) -> None:
    for scope in ("upload_device", "upload_user"):
        caches["throttle"].delete(f"throttle_{scope}_{user.pk}")


def test_a_camera_over_its_upload_rate_gets_429_with_retry_after(settings, client_for, device, neonate, unit):
    settings.NEOPAIN_UPLOAD_RATE_DEVICE = "2/min"
    other = DeviceFactory(name="bed-2", unit=unit, user=UserFactory(username="cam-2", role=Role.DEVICE, unit=unit))
    for camera in (device, other):
        _clear_throttle(camera.user)
    client = client_for(device.user)

    def upload(c, seed):
        image = SimpleUploadedFile("f.png", png_bytes(seed=seed), content_type="image/png")
        return c.post("/api/v1/frames/", {"neonate": neonate.mrn, "image": image}, format="multipart")

    assert [upload(client, 7100 + i).status_code for i in range(2)] == [202, 202]
    third = upload(client, 7102)

    assert third.status_code == 429
    assert 0 < int(third["Retry-After"]) <= 60
    assert "throttled" in third.json()["detail"].lower()
    assert Frame.objects.filter(device=device).count() == 2
    assert client.get("/api/v1/frames/").status_code == 200  # reading back is not an upload
    assert upload(client_for(other.user), 7103).status_code == 202  # another camera has its own budget


def test_a_person_over_the_user_rate_gets_429(settings, client_for, nurse, neonate, small_clip_bytes):
    settings.NEOPAIN_UPLOAD_RATE_USER = "1/min"
    _clear_throttle(nurse)
    client = client_for(nurse)
    image = SimpleUploadedFile("f.png", png_bytes(seed=7200), content_type="image/png")
    assert client.post("/api/v1/frames/", {"neonate": neonate.mrn, "image": image}, format="multipart").status_code == 202

    video = SimpleUploadedFile("c.mp4", small_clip_bytes, content_type="video/mp4")
    response = client.post("/api/v1/clips/", {"neonate": neonate.mrn, "video": video}, format="multipart")

    assert response.status_code == 429 and int(response["Retry-After"]) > 0


def _avi(path: Path, size: tuple[int, int]) -> bytes:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, size)
    for i in range(3):
        writer.write(np.full((size[1], size[0], 3), 50 * i, dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def _stored_clip(neonate, data: bytes, extension: str = ".avi") -> Clip:
    clip = Clip(neonate=neonate, unit=neonate.unit, sha256=hashlib.sha256(data).hexdigest(), extension=extension)
    clip.video.save("upload", ContentFile(data), save=True)
    return clip


def test_a_clip_over_the_pixel_cap_fails_without_being_decoded_and_leaves_no_file(settings, neonate, tmp_path):
    settings.NEOPAIN_MAX_CLIP_PIXELS = 320 * 240
    clip = _stored_clip(neonate, _avi(tmp_path / "big.avi", (640, 480)))
    storage, name = clip.video.storage, clip.video.name

    assert services.clip_process(clip_id=clip.pk) == 0

    clip.refresh_from_db()
    assert clip.status == Clip.Status.FAILED
    assert "640x480" in clip.reason and "over the cap" in clip.reason
    assert not storage.exists(name)
    assert Frame.objects.filter(clip=clip).count() == 0


# --- 18. a clip that fails for bad content leaves no file ------------------------------------------


def test_a_failed_clip_keeps_its_row_and_reason_but_not_its_file(neonate, small_clip_bytes):
    clip = _stored_clip(neonate, small_clip_bytes, ".mp4")  # an MP4 header and nothing decodable
    storage, name = clip.video.storage, clip.video.name
    assert storage.exists(name)

    services.clip_process(clip_id=clip.pk)

    clip.refresh_from_db()
    assert clip.status == Clip.Status.FAILED and clip.reason
    assert not storage.exists(name)
    assert not clip.video


# --- 10. EXIF stripped on ingest, the original's hash kept ----------------------------------------


def _jpeg_with_gps_and_a_name() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "Baby Jane Doe, bed 4"  # ImageDescription
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    exif[0x0112] = 6  # orientation: the stored pixels are rotated
    buffer = io.BytesIO()
    Image.new("RGB", (48, 64), (120, 90, 60)).save(buffer, format="JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def test_exif_is_stripped_on_ingest_and_the_original_hash_is_kept(client_for, device, neonate):
    data = _jpeg_with_gps_and_a_name()
    image = SimpleUploadedFile("f.jpg", data, content_type="image/jpeg")

    response = client_for(device.user).post(
        "/api/v1/frames/", {"neonate": neonate.mrn, "image": image}, format="multipart"
    )

    assert response.status_code == 202
    frame = Frame.objects.get(pk=response.json()["id"])
    with frame.image.open("rb") as handle:
        stored = handle.read()
    assert b"Jane Doe" not in stored
    assert "exif" not in Image.open(io.BytesIO(stored)).info
    assert Image.open(io.BytesIO(stored)).size == (64, 48)  # orientation applied to the pixels
    assert (frame.width, frame.height) == (64, 48)
    assert frame.original_sha256 == hashlib.sha256(data).hexdigest()
    assert frame.sha256 == hashlib.sha256(stored).hexdigest()
    assert frame.size_bytes == len(stored)
    again = client_for(device.user).post(
        "/api/v1/frames/",
        {"neonate": neonate.mrn, "image": SimpleUploadedFile("f.jpg", data, content_type="image/jpeg")},
        format="multipart",
    )
    assert again.status_code == 200 and again.json()["id"] == frame.pk


def test_an_image_without_metadata_is_stored_byte_for_byte(client_for, device, neonate):
    data = png_bytes(seed=7300)

    response = client_for(device.user).post(
        "/api/v1/frames/", {"neonate": neonate.mrn, "image": SimpleUploadedFile("f.png", data)}, format="multipart"
    )

    frame = Frame.objects.get(pk=response.json()["id"])
    with frame.image.open("rb") as handle:
        assert handle.read() == data
    assert frame.original_sha256 == frame.sha256 == hashlib.sha256(data).hexdigest()


# --- 11. an MRN of another unit is neither revealed nor reserved ------------------------------------


def test_registering_another_units_mrn_gets_the_same_answer_as_a_free_one(client_for, other_nurse, neonate):
    client = client_for(other_nurse)

    taken_elsewhere = client.post("/api/v1/neonates/", {"mrn": neonate.mrn}, format="json")
    free = client.post("/api/v1/neonates/", {"mrn": "MRN-FREE-1"}, format="json")

    assert taken_elsewhere.status_code == free.status_code == 201
    assert set(taken_elsewhere.json()) == set(free.json())
    assert Neonate.objects.filter(mrn=neonate.mrn).count() == 2
    assert Neonate.objects.get(mrn=neonate.mrn, unit=neonate.unit).pk == neonate.pk  # unit A's baby untouched


def test_an_mrn_is_unique_within_a_unit(client_for, nurse, neonate):
    response = client_for(nurse).post("/api/v1/neonates/", {"mrn": neonate.mrn}, format="json")

    assert response.status_code == 400
    assert "your unit" in response.json()["mrn"][0]


def test_each_unit_uploads_to_its_own_baby_with_a_shared_mrn(client_for, device, neonate, other_unit, other_nurse):
    twin = Neonate.objects.create(mrn=neonate.mrn, unit=other_unit, bed="9")

    north = client_for(device.user).post(
        "/api/v1/frames/", {"neonate": neonate.mrn, "image": SimpleUploadedFile("f.png", png_bytes(seed=7400))},
        format="multipart",
    )
    south = client_for(other_nurse).post(
        "/api/v1/frames/", {"neonate": neonate.mrn, "image": SimpleUploadedFile("f.png", png_bytes(seed=7401))},
        format="multipart",
    )

    assert Frame.objects.get(pk=north.json()["id"]).neonate_id == neonate.pk
    assert Frame.objects.get(pk=south.json()["id"]).neonate_id == twin.pk


# --- 16. a duplicate from another device gets only the id -----------------------------------------


def test_a_duplicate_from_another_camera_gets_only_the_id(client_for, device, neonate, unit):
    other = DeviceFactory(name="bed-3", unit=unit, user=UserFactory(username="cam-3", role=Role.DEVICE, unit=unit))
    data = png_bytes(seed=7500)

    def upload(user):
        image = SimpleUploadedFile("f.png", data, content_type="image/png")
        return client_for(user).post("/api/v1/frames/", {"neonate": neonate.mrn, "image": image}, format="multipart")

    first = upload(device.user)
    same_camera = upload(device.user)
    other_camera = upload(other.user)

    assert first.status_code == 202
    assert same_camera.status_code == 200 and same_camera.json()["duplicate"] is True
    assert "status" in same_camera.json()  # its own upload: the full answer
    assert other_camera.status_code == 200
    assert other_camera.json() == {"id": first.json()["id"], "duplicate": True}
    assert "Location" not in other_camera


def test_a_duplicate_clip_from_another_camera_gets_only_the_id(client_for, device, neonate, unit, small_clip_bytes):
    other = DeviceFactory(name="bed-4", unit=unit, user=UserFactory(username="cam-4", role=Role.DEVICE, unit=unit))

    def upload(user):
        video = SimpleUploadedFile("c.mp4", small_clip_bytes, content_type="video/mp4")
        return client_for(user).post("/api/v1/clips/", {"neonate": neonate.mrn, "video": video}, format="multipart")

    first = upload(device.user)
    other_camera = upload(other.user)

    assert other_camera.status_code == 200
    assert other_camera.json() == {"id": first.json()["id"], "duplicate": True}


def test_the_upload_throttle_fails_open_when_its_cache_is_down(settings, monkeypatch, client_for, device, neonate):
    """Frames must be stored while Redis is down (tests/faults/test_redis_down.py runs it for real)."""
    from triage import throttles

    settings.NEOPAIN_UPLOAD_RATE_DEVICE = "1/min"

    class DownCache:
        def get(self, *args, **kwargs):
            raise ConnectionError("redis is down")

        set = get

    monkeypatch.setattr(throttles, "caches", {"throttle": DownCache()})
    client = client_for(device.user)
    codes = [
        client.post(
            "/api/v1/frames/", {"neonate": neonate.mrn, "image": SimpleUploadedFile("f.png", png_bytes(seed=7600 + i))},
            format="multipart",
        ).status_code
        for i in range(2)
    ]

    assert codes == [202, 202]
