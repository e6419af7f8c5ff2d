"""Clip ingest and keyframe extraction (each keyframe becomes a frame)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from triage.models import Clip, Neonate, User
from triage.services import enqueue
from triage.services.ingest import frame_captured_at_check, frame_ingest, upload_read_capped
from triage.services.units import unit_settings_get

logger = logging.getLogger(__name__)


_VIDEO_SIGNATURES = (
    # (offset, magic, extension)
    (4, b"ftyp", ".mp4"),
    (0, b"\x1a\x45\xdf\xa3", ".mkv"),
    (0, b"RIFF", ".avi"),
)


def video_sniff(data: bytes) -> str:
    """The container's file extension from its magic bytes; ValidationError when not a video."""
    from django.core.exceptions import ValidationError

    if not data:
        raise ValidationError({"video": ["Empty file."]})
    for offset, magic, extension in _VIDEO_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if extension == ".avi" and data[8:12] != b"AVI ":
                continue
            if extension == ".mp4" and data[8:10] == b"qt":
                return ".mov"
            return extension
    raise ValidationError({"video": ["Not an accepted video container (MP4/MOV, Matroska/WebM or AVI)."]})


def clip_ingest(*, neonate: Neonate, video_file, captured_at=None, device=None, uploaded_by: User | None):
    """Validate, store and queue a video clip; keyframes become frames on a worker. Returns ``(clip, created)``."""
    import hashlib

    from django.conf import settings
    from django.core.files.base import ContentFile

    data = upload_read_capped(upload=video_file, max_bytes=settings.NEOPAIN_MAX_CLIP_BYTES)
    captured_at = frame_captured_at_check(captured_at=captured_at)
    extension = video_sniff(data)
    sha256 = hashlib.sha256(data).hexdigest()
    existing = Clip.objects.filter(neonate=neonate, sha256=sha256).first()
    if existing is not None:
        return existing, False
    now = timezone.now()
    clip = Clip(
        neonate=neonate,
        unit_id=neonate.unit_id,
        uploaded_by=uploaded_by if uploaded_by is not None and uploaded_by.is_authenticated else None,
        extension=extension,
        sha256=sha256,
        captured_at=captured_at or now,
        received_at=now,
    )
    clip.video.save("upload", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            clip.save()
            if device is not None:
                type(device).objects.filter(pk=device.pk).update(last_seen_at=now)
            transaction.on_commit(lambda: enqueue.clips_enqueue(clip_ids=[clip.pk]))
    except BaseException:
        # The row was not written: leave no orphan video on disk.
        clip.video.storage.delete(clip.video.name)
        raise
    logger.info("clip %s queued for neonate %s (%d bytes)", clip.pk, neonate.pk, len(data))
    return clip, True


def clip_process(*, clip_id: int) -> int:
    """Extract keyframes of a queued clip; each becomes a frame through ``frame_ingest``. Returns frames created."""
    import io

    from django.conf import settings

    with transaction.atomic():
        claimed = Clip.objects.filter(pk=clip_id, status__in=[Clip.Status.QUEUED]).update(status=Clip.Status.PROCESSING)
    if not claimed:
        logger.info("clip %s is not queued; nothing to do", clip_id)
        return 0
    clip = Clip.objects.select_related("neonate").get(pk=clip_id)
    from inference.keyframes import UnreadableClip, keyframes_from_bytes

    try:
        with clip.video.open("rb") as handle:
            data = handle.read(settings.NEOPAIN_MAX_CLIP_BYTES + 1)
        period = unit_settings_get(unit=clip.neonate.unit).keyframe_period_s
        keyframes = keyframes_from_bytes(
            data, clip.extension, period_s=period or None, max_pixels=settings.NEOPAIN_MAX_CLIP_PIXELS
        )
    except Exception as exc:
        reason = f"keyframe extraction failed: {type(exc).__name__}: {exc}"[:500]
        Clip.objects.filter(pk=clip_id).update(status=Clip.Status.FAILED, reason=reason)
        logger.warning("clip %s: %s", clip_id, reason)
        if isinstance(exc, UnreadableClip):
            _clip_video_delete(clip)
        return 0
    device = getattr(clip.uploaded_by, "device", None) if clip.uploaded_by_id else None
    created_count = 0
    for keyframe in keyframes:
        buffer = io.BytesIO()
        keyframe.image.convert("RGB").save(buffer, format="JPEG", quality=95)
        try:
            _, created = frame_ingest(
                neonate=clip.neonate,
                image_file=buffer.getvalue(),
                captured_at=clip.captured_at + timedelta(seconds=float(keyframe.time_s)),
                device=device,
                uploaded_by=clip.uploaded_by,
                clip=clip,
                clip_time_s=float(keyframe.time_s),
            )
        except Exception as exc:  # one bad keyframe must not lose the others
            logger.warning("clip %s keyframe %s skipped: %s", clip_id, keyframe.index, exc)
            continue
        created_count += int(created)
    Clip.objects.filter(pk=clip_id).update(
        status=Clip.Status.DONE if keyframes else Clip.Status.FAILED,
        keyframe_count=len(keyframes),
        reason="" if keyframes else "no keyframes could be decoded from this video",
    )
    if not keyframes:
        _clip_video_delete(clip)
    logger.info("clip %s: %d keyframes, %d new frames", clip_id, len(keyframes), created_count)
    return created_count


def _clip_video_delete(clip: Clip) -> None:
    """A clip that failed for its content keeps its row and reason, not the video (patient images
    nobody will look at). A storage error here is logged: the clip has failed either way."""
    name = clip.video.name
    if not name:
        return
    try:
        clip.video.storage.delete(name)
    except OSError as exc:
        logger.warning("clip %s: could not delete %s: %s", clip.pk, name, exc)
        return
    Clip.objects.filter(pk=clip.pk).update(video="")
