"""Issue 6, Uploads (lines 7-10): hostile files leave nothing behind; awkward but valid images are accepted
and really processed; client file names are never used; bad neonates and clocks are refused clearly.

"Nothing behind" is checked three ways: no ``Frame`` row, no file under MEDIA_ROOT, and no
``frame_process`` publish (on-commit callbacks are run and the publish is recorded, not sent).
"""

from __future__ import annotations

import io
import os
import re
import uuid
from datetime import timedelta

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from tests.factories import png_bytes
from tests.hardening.conftest import astronaut, encode, media_files
from triage import services
from triage.models import Clip, Frame, Prediction

pytestmark = pytest.mark.django_db

STORED_NAME = re.compile(r"^frames/\d{4}/\d{2}/\d{2}/[0-9a-f]{32}\.(png|jpg|webp|tif|bmp|gif)$")


def post_image(client, *, mrn: str, data: bytes, name: str = "frame.jpg", content_type: str = "image/jpeg", **fields):
    upload = SimpleUploadedFile(name, data, content_type=content_type)
    return client.post("/api/v1/frames/", {"neonate": mrn, "image": upload, **fields}, format="multipart")


def png_header_only(width: int, height: int) -> bytes:
    from tests.inference.inference_helpers import png_header_only as header

    return header(width, height)


def astronaut_jpeg(quality: int = 90) -> bytes:
    return encode(astronaut(), "JPEG", quality=quality)


# --- 7. hostile files ---------------------------------------------------------------------------

HOSTILE = {
    # name: (bytes, file name, settings overrides, expected status, words the error must contain)
    "png-claiming-20000x20000": (lambda: png_header_only(20000, 20000), "big.png", {}, 400, "pixel"),
    "over-the-pixel-cap": (lambda: png_bytes(size=(64, 48)), "x.png", {"NEOPAIN_MAX_IMAGE_PIXELS": 1000}, 400, "pixel"),
    "over-the-byte-cap-streamed": (
        lambda: astronaut_jpeg(),
        "x.jpg",
        {"NEOPAIN_MAX_UPLOAD_BYTES": 10_000},
        413,
        "limit",
    ),
    "over-the-byte-cap-declared": (
        lambda: astronaut_jpeg() * 8,
        "x.jpg",
        {"NEOPAIN_MAX_UPLOAD_BYTES": 10_000},
        413,
        "limit",
    ),
    "truncated-jpeg": (lambda: astronaut_jpeg()[: len(astronaut_jpeg()) // 2], "x.jpg", {}, 400, "truncated"),
    "text-named-jpg": (lambda: b"Patient notes: nothing to see here.\n", "x.jpg", {}, 400, "text"),
    "html-named-jpg": (lambda: b"<!doctype html><html><script>alert(1)</script></html>", "x.jpg", {}, 400, "HTML"),
    "empty": (lambda: b"", "x.jpg", {}, 400, "empty"),
    "svg": (
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>',
        "x.svg",
        {},
        400,
        "SVG",
    ),
    "svg-named-png": (
        lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "x.png",
        {},
        400,
        "SVG",
    ),
    "random-bytes": (
        lambda: np.random.default_rng(6).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "x.jpg",
        {},
        400,
        "not a recognised image",
    ),
    "jpeg-magic-then-garbage": (lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "x.jpg", {}, 400, "image"),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_file_gets_a_clear_json_error_and_leaves_nothing_behind(
    settings, client_for, device, neonate, media_root, enqueued, django_capture_on_commit_callbacks, kind
):
    make, name, overrides, expected, words = HOSTILE[kind]
    for key, value in overrides.items():
        setattr(settings, key, value)
    data = make()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_image(client_for(device.user), mrn=neonate.mrn, data=data, name=name)

    assert response.status_code == expected, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert words.lower() in response.json()["detail"].lower()
    assert Frame.objects.count() == 0
    assert media_files(media_root) == []
    assert callbacks == [] and enqueued == []


def test_the_checks_run_before_anything_is_written(settings, neonate, media_root, enqueued, monkeypatch):
    """Belt and braces for the above: the storage is never asked to save a refused upload."""
    from django.core.files.storage import FileSystemStorage

    saved = []
    monkeypatch.setattr(FileSystemStorage, "_save", lambda self, name, content: saved.append(name) or name)
    for kind in ("png-claiming-20000x20000", "truncated-jpeg", "svg", "random-bytes"):
        make = HOSTILE[kind][0]
        with pytest.raises(ValidationError):
            services.frame_ingest(neonate=neonate, image_file=make(), uploaded_by=None)

    assert saved == []


def test_a_hostile_clip_leaves_nothing_behind(
    client_for, device, neonate, media_root, enqueued, django_capture_on_commit_callbacks
):
    video = SimpleUploadedFile("clip.mp4", b"<html>not a video</html>", content_type="video/mp4")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(device.user).post(
            "/api/v1/clips/", {"neonate": neonate.mrn, "video": video}, format="multipart"
        )

    assert response.status_code == 400 and "video" in response.json()["detail"]
    assert Clip.objects.count() == 0 and media_files(media_root) == [] and enqueued == []


def test_a_file_whose_row_cannot_be_written_is_not_left_on_disk(neonate, media_root, enqueued, monkeypatch):
    """A database failure between storing the file and inserting the row must not leave an orphan image."""
    from django.db import OperationalError

    def fail(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(Frame, "save", fail)

    with pytest.raises(OperationalError):
        services.frame_ingest(neonate=neonate, image_file=png_bytes(seed=3), uploaded_by=None)

    assert media_files(media_root) == []
    assert enqueued == []


# --- 8. awkward but valid images are accepted and processed ---------------------------------------


def _cmyk() -> bytes:
    return encode(astronaut().convert("CMYK"), "JPEG", quality=92)


def _greyscale() -> bytes:
    return encode(astronaut().convert("L"), "PNG")


def _rgba() -> bytes:
    image = astronaut().convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size).point(lambda v: 128 + v // 2))
    return encode(image, "PNG")


def _sixteen_bit() -> bytes:
    grey = np.asarray(astronaut().convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")  # uint16 -> mode I;16


def _webp() -> bytes:
    return encode(astronaut(), "WEBP", quality=90)


def _exif_rotated() -> bytes:
    """Stored sideways (as a phone held on its side), EXIF orientation 6 says "rotate 90 CW to view"."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(astronaut().rotate(90, expand=True), "JPEG", quality=92, exif=exif.tobytes())


def _palette_gif() -> bytes:
    return encode(astronaut().convert("P", palette=Image.Palette.ADAPTIVE), "GIF")


ACCEPTED = {
    "cmyk-jpeg": (_cmyk, "JPEG", "CMYK"),
    "greyscale-png": (_greyscale, "PNG", "L"),
    "rgba-png": (_rgba, "PNG", "RGBA"),
    "16-bit-png": (_sixteen_bit, "PNG", "I;16"),
    "webp": (_webp, "WEBP", "RGB"),
    "exif-rotated-jpeg": (_exif_rotated, "JPEG", "RGB"),
    "palette-gif": (_palette_gif, "GIF", "P"),
}


@pytest.mark.parametrize("kind", ACCEPTED)
def test_an_awkward_but_valid_image_is_accepted_and_processed(
    client_for, device, neonate, real_model, enqueued, django_capture_on_commit_callbacks, kind
):
    make, fmt, mode = ACCEPTED[kind]
    data = make()
    assert Image.open(io.BytesIO(data)).mode.startswith(mode[:1])  # the test image is what it claims

    with django_capture_on_commit_callbacks(execute=True):
        response = post_image(client_for(device.user), mrn=neonate.mrn, data=data, name=f"frame.{fmt.lower()}")
    assert response.status_code == 202, response.content[:300]
    frame_id = response.json()["id"]
    assert response.json()["format"] == fmt
    assert [(name, args) for name, args, _ in enqueued] == [("frame_process", [frame_id])]

    counts = services.frames_process(frame_ids=[frame_id])

    frame = Frame.objects.get(pk=frame_id)
    assert counts["done"] == 1, (frame.status, frame.reason)
    assert (frame.status, frame.width, frame.height) == ("done", 256, 256)
    prediction = Prediction.objects.get(frame=frame)
    assert 0.0 <= prediction.p_pain <= 1.0
    x, y, w, h = prediction.box
    assert 0 <= x < x + w <= 256 and 0 <= y < y + h <= 256 and w > 20 and h > 20
    if kind == "exif-rotated-jpeg":
        # The face is in the upper middle of the upright picture; unrotated it would sit left of centre.
        assert y < 80 and x > 50, prediction.box


# --- 9. client file names are never used ----------------------------------------------------------

HOSTILE_NAMES = [
    "../../x.jpg",
    "..\\..\\x.jpg",
    "/etc/cron.d/x.jpg",
    "..%2F..%2Fx.jpg",
    "x.jpg\u202egnp.exe",
    "a" * 300 + ".jpg",
    ".htaccess",
]


def raw_multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart body built by hand: Django's test client would strip the path from the file name itself."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("filename", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_the_client_file_name_is_never_used(client_for, nurse, neonate, media_root, tmp_path, enqueued, filename):
    body, content_type = raw_multipart({"neonate": neonate.mrn}, filename, png_bytes(seed=len(filename)))

    response = client_for(nurse).generic("POST", "/api/v1/frames/", body, content_type=content_type)

    assert response.status_code == 202, response.content[:300]
    frame = Frame.objects.get(pk=response.json()["id"])
    assert STORED_NAME.match(frame.image.name), frame.image.name
    stored = (media_root / frame.image.name).resolve()
    assert stored.is_file() and stored.is_relative_to(media_root.resolve())
    assert [p for p in media_files(media_root) if p != stored] == []
    assert not any(p.name in ("x.jpg", ".htaccess") for p in tmp_path.parent.rglob("*") if p.is_file())
    assert "x.jpg" not in response.content.decode() and ".." not in frame.image.name


def test_stored_files_are_private_to_the_server_user(client_for, nurse, neonate, media_root):
    response = post_image(client_for(nurse), mrn=neonate.mrn, data=png_bytes(seed=11), name="f.png")

    frame = Frame.objects.get(pk=response.json()["id"])
    mode = os.stat(media_root / frame.image.name).st_mode & 0o777
    assert mode & 0o077 == 0, oct(mode)


# --- 10. neonate and clock ------------------------------------------------------------------------

REFUSED_FIELDS = {
    "unknown-neonate": ({"neonate": "NO-SUCH-MRN"}, "neonate", "No active neonate with MRN 'NO-SUCH-MRN'"),
    "another-units-neonate": ({"neonate": "MRN-SOUTH-1"}, "neonate", "No active neonate with MRN 'MRN-SOUTH-1'"),
    "captured-a-day-ahead": ({"captured_at": "+1d"}, "captured_at", "in the future"),
    "captured-years-ahead": ({"captured_at": "+3650d"}, "captured_at", "in the future"),
    "captured-at-garbage": ({"captured_at": "yesterday-ish"}, "captured_at", "captured_at"),
    "mrn-too-long": ({"neonate": "M" * 200}, "neonate", "neonate"),
}


@pytest.mark.parametrize("case", REFUSED_FIELDS)
def test_a_bad_neonate_or_capture_time_is_a_clear_400(
    client_for, device, neonate, other_neonate, media_root, enqueued, django_capture_on_commit_callbacks, case
):
    fields, field, message = REFUSED_FIELDS[case]
    fields = dict(fields)
    if fields.get("captured_at", "").startswith("+"):
        fields["captured_at"] = (timezone.now() + timedelta(days=int(fields["captured_at"][1:-1]))).isoformat()
    mrn = fields.pop("neonate", neonate.mrn)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_image(client_for(device.user), mrn=mrn, data=png_bytes(seed=21), name="f.png", **fields)

    assert response.status_code == 400
    body = response.json()
    assert field in body and message in body["detail"]
    assert Frame.objects.count() == 0 and media_files(media_root) == [] and enqueued == []


def test_another_units_neonate_gets_the_same_answer_as_an_unknown_one(client_for, device, other_neonate):
    client = client_for(device.user)
    foreign = post_image(client, mrn=other_neonate.mrn, data=png_bytes(seed=31), name="f.png").json()
    unknown = post_image(client, mrn="NO-SUCH-MRN", data=png_bytes(seed=32), name="f.png").json()

    assert foreign["neonate"][0].replace(other_neonate.mrn, "X") == unknown["neonate"][0].replace("NO-SUCH-MRN", "X")


def test_a_capture_time_within_the_allowed_skew_is_accepted(client_for, device, neonate, settings):
    settings.NEOPAIN_MAX_FUTURE_SKEW_SECONDS = 300
    ahead = (timezone.now() + timedelta(seconds=120)).isoformat()

    response = post_image(
        client_for(device.user), mrn=neonate.mrn, data=png_bytes(seed=41), name="f.png", captured_at=ahead
    )

    assert response.status_code == 202
