"""Frame ingest: capped reads of uploads, capture-time checks, storing a frame and queueing it."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from triage.models import Frame, Neonate, User
from triage.services import enqueue

logger = logging.getLogger(__name__)


class UploadTooLarge(Exception):
    """The upload is over its byte cap (answered with 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"File is over the {limit}-byte limit.")
        self.limit = limit


def upload_read_capped(*, upload, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` from an uploaded file (or bytes); never loads an unbounded upload."""
    if isinstance(upload, (bytes, bytearray, memoryview)):
        data = bytes(upload)
    else:
        declared = getattr(upload, "size", None)
        if declared is not None and declared > max_bytes:
            raise UploadTooLarge(max_bytes)
        if hasattr(upload, "seek"):
            try:
                upload.seek(0)
            except (OSError, ValueError):
                pass
        data = upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UploadTooLarge(max_bytes)
    return data


def frame_captured_at_check(*, captured_at, now=None):
    """Reject timestamps from the future (a camera clock off by more than the allowed skew)."""
    from django.conf import settings
    from django.core.exceptions import ValidationError

    if captured_at is None:
        return None
    if timezone.is_naive(captured_at):
        captured_at = timezone.make_aware(captured_at, timezone.get_default_timezone())
    now = now or timezone.now()
    skew = settings.NEOPAIN_MAX_FUTURE_SKEW_SECONDS
    if captured_at > now + timedelta(seconds=skew):
        raise ValidationError(
            {
                "captured_at": [
                    f"{captured_at.isoformat()} is in the future (server time {now.isoformat()}, "
                    f"allowed clock skew {skew} s). Check the camera's clock."
                ]
            }
        )
    return captured_at


#: ``Device.last_seen_at`` is refreshed at most this often: a camera uploading several frames a
#: second otherwise wrote (and row-locked) its device row in every upload's transaction.
DEVICE_SEEN_RESOLUTION = timedelta(seconds=60)


def frame_ingest(
    *,
    neonate: Neonate,
    image_file,
    captured_at=None,
    device=None,
    uploaded_by: User | None,
    clip=None,
    clip_time_s: float | None = None,
) -> tuple[Frame, bool]:
    """Validate, store and queue one face image. Returns ``(frame, created)``.

    Validated before anything is stored: byte cap, content sniffing (not the client's name or
    content type), pixel cap, clock skew. The same image for the same neonate returns the
    existing frame (``created=False``). The file is stored under a server-generated name and
    ``frame_process`` is enqueued after commit; if the broker is down the frame stays ``queued``
    and the sweeper enqueues it later.
    """
    import hashlib

    from django.conf import settings
    from django.core.exceptions import ValidationError
    from django.core.files.base import ContentFile
    from django.db import IntegrityError

    from inference.decode import UnreadableImage, sniff_image, strip_metadata

    max_bytes = settings.NEOPAIN_MAX_UPLOAD_BYTES
    max_pixels = settings.NEOPAIN_MAX_IMAGE_PIXELS
    data = upload_read_capped(upload=image_file, max_bytes=max_bytes)
    if clip is None:
        captured_at = frame_captured_at_check(captured_at=captured_at)
    original_sha256 = hashlib.sha256(data).hexdigest()
    try:
        sniffed = sniff_image(data, max_pixels=max_pixels, max_bytes=max_bytes)
        # EXIF (GPS, a name in ImageDescription), XMP and comments are not stored: the upload is
        # re-encoded without them, orientation applied. Its own hash is kept for provenance.
        stripped = strip_metadata(data, max_pixels=max_pixels, max_bytes=max_bytes)
        if stripped is not None:
            data = stripped
            sniffed = sniff_image(data, max_pixels=max_pixels, max_bytes=max(max_bytes, len(data)))
    except UnreadableImage as exc:
        raise ValidationError({"image": [f"Not an acceptable image: {exc.reason}."]}) from exc
    sha256 = hashlib.sha256(data).hexdigest()
    now = timezone.now()

    # No look-up for a duplicate first: the unique (neonate, sha256) constraint refuses it at the
    # insert (a rare re-upload then costs a file written and removed; every upload saves a query).
    frame = Frame(
        neonate=neonate,
        unit_id=neonate.unit_id,
        device=device,
        uploaded_by=uploaded_by if uploaded_by is not None and uploaded_by.is_authenticated else None,
        clip=clip,
        clip_time_s=clip_time_s,
        captured_at=captured_at or now,
        received_at=now,
        sha256=sha256,
        original_sha256=original_sha256,
        image_format=sniffed["format"],
        width=sniffed["width"],
        height=sniffed["height"],
        size_bytes=len(data),
        status=Frame.Status.QUEUED,
        status_changed_at=now,
    )
    frame.image.save("upload", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            frame.save()
            if device is not None and (
                device.last_seen_at is None or now - device.last_seen_at >= DEVICE_SEEN_RESOLUTION
            ):
                type(device).objects.filter(pk=device.pk).update(last_seen_at=now)
            transaction.on_commit(lambda: enqueue.frames_enqueue(frame_ids=[frame.pk]))
    except IntegrityError:
        # The same image for this neonate is stored already (a re-upload, or a concurrent upload
        # that won the race): answer with that frame.
        frame.image.storage.delete(frame.image.name)
        existing = Frame.objects.filter(neonate=neonate, sha256=sha256).first()
        if existing is None:
            raise
        logger.info("frame %s: duplicate upload for neonate %s", existing.pk, neonate.pk)
        return existing, False
    except BaseException:
        # The row was not written (database gone, request aborted): leave no orphan image on disk.
        frame.image.storage.delete(frame.image.name)
        raise
    logger.info(
        "frame %s queued for neonate %s (%s %dx%d, %d bytes)",
        frame.pk,
        neonate.pk,
        frame.image_format,
        frame.width,
        frame.height,
        frame.size_bytes,
    )
    return frame, True
